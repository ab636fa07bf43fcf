"""What stage 3 says about each photo beyond its place on the map: the photo info of stage 1's sidecar
(date taken, camera; GPS only when asked for), the classifier's top classes, and whether the labels
come from published weights."""
from . import features, infolog
from .exif import FROM_MTIME
from .report import printable

# Per-photo details handed to the page (looked up when a photo is hovered or pinned, never drawn).
CLASSES, TAKEN, TAKEN_SOURCE, CAMERA, GPS = "classes", "taken", "taken_source", "camera", "gps"


def load_info(thumbs_dir, say=None):
    """Stage 1's :class:`~photomap.infolog.InfoTable` beside ``thumbs_dir``, or ``None`` (no sidecar:
    photos listed before it existed; an unreadable one is said in one line given to ``say``)."""
    say = say or (lambda line: None)
    path = infolog.info_path(thumbs_dir)
    try:
        return infolog.read_info(thumbs_dir)
    except FileNotFoundError:
        say("no photo info %s: dates and cameras unknown (process_photos.py -l META --backfill-info "
            "records them)" % printable(path))
    except OSError as exc:
        say("cannot read the photo info %s (%s): dates and cameras unknown" % (
            printable(path), exc.strerror or exc))
    return None


def camera(info) -> str:
    """``"Canon EOS 5D"`` from make ``Canon`` and model ``Canon EOS 5D`` (the model often repeats
    the make); "" when neither is known."""
    make, model = info.make.strip(), info.model.strip()
    if make and model.lower().startswith(make.split()[0].lower()):
        return model
    return " ".join(p for p in (make, model) if p)


def page_details(md5s, found, info_table, show_gps=False) -> dict:
    """The per-photo details the page looks up (name -> one JSON-able value per photo of ``md5s``):
    ``classes`` ``[[name, probability], ...]`` (top 3, best first; ``[]`` without a classifier, from
    ``found``, an :class:`~photomap.islands.Islands`), ``taken`` (ISO 8601 or ""), ``taken_source``
    (``exif:DateTimeOriginal``, ``exif:DateTime``, ``mtime`` or ""), ``camera``; and ``gps``
    (``[lat, lon]`` or ``None``) only with ``show_gps``: positions are private."""
    by_md5 = info_table.by_md5 if info_table is not None else {}
    infos = [by_md5.get(m) for m in md5s]
    out = {CLASSES: [[[name, round(p, 4)] for name, p in found.top_classes(i)] for i in range(len(md5s))],
           TAKEN: [i.taken if i else "" for i in infos],
           TAKEN_SOURCE: [i.taken_source if i else "" for i in infos],
           CAMERA: [camera(i) if i else "" for i in infos]}
    if show_gps:
        out[GPS] = [[i.lat, i.lon] if i and i.lat is not None else None for i in infos]
    return out


def years(md5s, info_table):
    """``(year or None per photo, how many are dated by the file's modification time only)``."""
    by_md5 = info_table.by_md5 if info_table is not None else {}
    infos = [by_md5.get(m) for m in md5s]
    return [i.year if i else None for i in infos], sum(1 for i in infos if i and i.taken_source == FROM_MTIME)


def weights_note(features_dir):
    """One line when the feature folder's weights are not torchvision's published ones (then the
    cluster labels name nothing real), ``None`` when they are. ``features.json`` records it
    (``weights_published``, checked by stage 2 against the published file's hash)."""
    try:
        sidecar = features.read_sidecar(features_dir) or {}
    except (OSError, ValueError):
        sidecar = {}
    published = sidecar.get("weights_published") if isinstance(sidecar, dict) else None
    if published is True:
        return None
    if published is False:
        return ("labels come from weights that are not the published ones (%s; e.g. random-init): "
                "they name nothing real" % printable(str(sidecar.get("weights_file") or sidecar.get("weights"))))
    return ("labels come from weights not checked against the published ones (features.json predates "
            "that check; run embeddings.py on %s again): they may name nothing real" % printable(features_dir))
