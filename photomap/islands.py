"""The map's islands, named: one call for stage 3 that clusters the layout (:mod:`photomap.clusters`),
keeps the ids of an earlier map, names the clusters with the model's own classifier
(:mod:`photomap.labels`) and places their labels."""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import classifier, clusters, labels
from .clusters_csv import rows_for


@dataclass
class Islands:
    """``ids`` (n,) int32 cluster per photo (-1 unclustered); ``sizes`` (k,) photos per id;
    ``names`` label per id (``None`` when unnamed, and then ``note`` says why in one line);
    ``placement`` where labels go; ``summary`` the classifier's per-photo top classes (``None``
    when unnamed) and ``categories`` its class names."""
    ids: np.ndarray
    sizes: np.ndarray
    names: Optional[list]
    placement: labels.Placement
    summary: Optional[labels.Summary]
    categories: Optional[tuple]
    note: Optional[str]

    def rows(self) -> list:
        """The ``<page>.clusters.csv`` rows (:class:`~photomap.clusters_csv.ClusterRow`)."""
        return rows_for(self.names, self.sizes, self.placement.xy)

    def top_classes(self, i) -> list:
        """Photo ``i``'s top classes ``[(name, probability), ...]``; ``[]`` when unnamed."""
        return labels.photo_classes(self.summary, self.categories, i) if self.summary else []


def find_islands(coords, vectors, features_dir, md5s=None, previous=None) -> Islands:
    """Clusters of the map ``coords`` (n, 2) of photos with feature ``vectors`` (n, D) from
    ``features_dir``. With ``previous`` (md5 -> cluster id of an earlier map) and ``md5s`` (the
    photos' md5s, in order), clusters that are still the same keep their old ids
    (:func:`photomap.clusters.match_ids`). Without a usable ``classifier.npz`` the clusters are
    unnamed and ``note`` says why."""
    ids = clusters.find_clusters(coords)
    if previous and md5s is not None:
        kept = clusters.match_ids(previous, dict(zip(md5s, ids.tolist())))
        ids = np.array([kept[m] for m in md5s], np.int32)
    sizes = clusters.sizes(ids)
    placement = labels.place_labels(coords, ids)
    clf, note = classifier.load(features_dir, np.shape(vectors)[1] if np.ndim(vectors) == 2 else None)
    if clf is None:
        return Islands(ids, sizes, None, placement, None, None, "clusters unnamed: " + note)
    summary = labels.summarise(vectors, clf, ids)
    names = labels.cluster_labels(summary, sizes, clf.categories)
    return Islands(ids, sizes, names, placement, summary, clf.categories, None)
