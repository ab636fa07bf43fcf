"""``<page>.clusters.csv``, the map's named islands for scripts, written and read only here: header
``cluster,label,size,x,y``, one row per cluster (id from 0; unclustered photos get no row), ``label``
the cluster's distinctive classes joined by " · " (empty without a classifier), ``x, y`` where the
label is drawn. Also the per-photo values the coordinates CSV carries (``cluster``, ``taken``,
``taken_source``; ``lat``, ``lon`` only with ``--show-gps``)."""
import csv
import io
import os
from dataclasses import dataclass

from .fsutil import atomic_write

HEADER = ["cluster", "label", "size", "x", "y"]


@dataclass(frozen=True)
class ClusterRow:
    """One named island: ``cluster`` id, ``label`` ("" when unnamed), ``size`` in photos, label at
    (``x``, ``y``)."""
    cluster: int
    label: str
    size: int
    x: float
    y: float


def clusters_csv_path(page_path) -> str:
    """``output/map.html`` -> ``output/map.clusters.csv``."""
    return os.path.splitext(os.fspath(page_path))[0] + ".clusters.csv"


def rows_for(labels, sizes, xy) -> list:
    """:class:`ClusterRow` list from per-id ``labels`` (or ``None``: unnamed), ``sizes`` and label
    positions ``xy`` (k, 2); ids without photos are left out."""
    return [ClusterRow(cid, labels[cid] if labels is not None else "", int(size),
                       float(xy[cid][0]), float(xy[cid][1]))
            for cid, size in enumerate(sizes) if size > 0]


def write_clusters_csv(path, rows) -> None:
    """Write ``rows`` (:class:`ClusterRow`) atomically, in id order."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for r in sorted(rows, key=lambda r: r.cluster):
        w.writerow([r.cluster, r.label, r.size, repr(r.x), repr(r.y)])
    with atomic_write(path, "w") as f:
        f.write(buf.getvalue())


def read_clusters_csv(path):
    """``(rows, bad)``: the :class:`ClusterRow` list of the file at ``path`` and how many rows were
    ignored (wrong field count, a value that is not a number, a negative id or size, a repeated id).
    Columns are taken by header name, so later versions may add some. Raises ``OSError`` when the
    file cannot be read and ``ValueError`` when it has no such header."""
    with open(path, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    if not table or not set(HEADER) <= set(table[0]):
        raise ValueError("%s does not start with the header %s" % (path, ",".join(HEADER)))
    col = {name: i for i, name in enumerate(table[0])}
    rows, bad, seen = [], 0, set()
    for fields in table[1:]:
        try:
            if len(fields) != len(col):
                raise ValueError
            row = ClusterRow(int(fields[col["cluster"]]), fields[col["label"]], int(fields[col["size"]]),
                             float(fields[col["x"]]), float(fields[col["y"]]))
            if row.cluster < 0 or row.size < 0 or row.cluster in seen:
                raise ValueError
        except ValueError:
            bad += 1
            continue
        seen.add(row.cluster)
        rows.append(row)
    return rows, bad


def coords_columns(md5s, cluster_ids, info_table, gps=False) -> dict:
    """The values of the coordinates CSV's added columns, in ``md5s`` order: ``cluster`` (int, -1 =
    unclustered), ``taken`` (ISO 8601 or "") and ``taken_source`` (see :mod:`photomap.exif`; "" when
    unknown). ``cluster_ids`` is aligned with ``md5s`` (or ``None``: all -1); ``info_table`` is an
    :class:`~photomap.infolog.InfoTable` or ``None``. GPS is private: ``lat`` and ``lon`` (degrees,
    "" when unknown) are added only with ``gps``."""
    from .infolog import taken_columns

    taken = [taken_columns(info_table, md5) for md5 in md5s]
    ids = [int(c) for c in cluster_ids] if cluster_ids is not None else [-1] * len(md5s)
    out = {"cluster": ids, "taken": [t for t, _ in taken], "taken_source": [s for _, s in taken]}
    if gps:
        infos = [info_table.by_md5.get(m) if info_table is not None else None for m in md5s]
        for key in ("lat", "lon"):
            out[key] = ["%.6f" % getattr(i, key) if i is not None and getattr(i, key) is not None else ""
                        for i in infos]
    return out
