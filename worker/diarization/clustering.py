"""Speaker embeddings → one cluster id per embedding, within the job's speaker bounds.

Spectral clustering with an eigen-gap estimate of the count (3D-Speaker's recipe, as senko packages it) up to 20
minutes; UMAP + HDBSCAN beyond, where the affinity matrix would grow too large. Whatever the method finds, the
result is then held to the job's maximum by merging the closest speakers (cosine of their centroids).
"""

from __future__ import annotations

import numpy as np

from worker.diarization.turns import SpeakerBounds

DEFAULT_MOST_SPEAKERS = 15  # when the job gives no maximum
FEW_EMBEDDINGS = 10  # below this a spectral estimate is noise: one speaker unless the job asks for more
SAME_SPEAKER_COSINE = 0.875  # clusters whose centroids are closer than this are one voice
SMALLEST_CLUSTER = 4  # embeddings: fewer is a cough or a crosstalk fragment, folded into its nearest speaker


def cluster(embeddings: np.ndarray, bounds: SpeakerBounds, *, long_form: bool = False) -> np.ndarray:
    count = len(embeddings)
    if count == 0:
        return np.zeros(0, dtype=int)
    most = min(bounds.most(DEFAULT_MOST_SPEAKERS), count)
    fewest = min(bounds.fewest, most)
    if count < FEW_EMBEDDINGS:
        labels = _agglomerative(embeddings, fewest) if fewest > 1 else np.zeros(count, dtype=int)
    else:
        # The estimate is free up to the default ceiling; a lower maximum is met by merging afterwards, which
        # keeps the closest voices together rather than letting the eigen-gap settle on too few.
        ceiling = min(max(DEFAULT_MOST_SPEAKERS, most), count - 1)
        labels = _estimate(embeddings, bounds.exact and min(bounds.exact, count), fewest, ceiling, long_form)
    return merge_to(labels, embeddings, most)


def _estimate(embeddings: np.ndarray, exact: int | None, fewest: int, most: int, long_form: bool) -> np.ndarray:
    from senko.cluster.cluster_cpu import CommonClustering

    if long_form and exact is None:
        method = CommonClustering(
            "umap_hdbscan",
            mer_cos=SAME_SPEAKER_COSINE,
            min_cluster_size=10,
            n_neighbors=40,
            n_components=60,
            min_samples=20,
            metric="cosine",
        )
    else:
        method = CommonClustering(
            "spectral",
            cluster_line=FEW_EMBEDDINGS,
            # An exact count is the caller's knowledge: do not merge voices that merely sound alike.
            mer_cos=None if exact else SAME_SPEAKER_COSINE,
            min_cluster_size=SMALLEST_CLUSTER,
            min_num_spks=fewest,
            max_num_spks=most,
            oracle_num=exact,
            pval=0.012,
        )
    return np.asarray(method(embeddings.astype(np.float32)), dtype=int)


def _agglomerative(embeddings: np.ndarray, speakers: int) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    if speakers >= len(embeddings):
        return np.arange(len(embeddings))
    method = AgglomerativeClustering(n_clusters=speakers, metric="cosine", linkage="average")
    return np.asarray(method.fit_predict(embeddings), dtype=int)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def merge_to(labels: np.ndarray, embeddings: np.ndarray, most: int) -> np.ndarray:
    """Merge the two most similar clusters until at most ``most`` remain; noise labels (-1) join their nearest."""
    labels = labels.copy()
    while True:
        ids = [i for i in np.unique(labels) if i >= 0]
        if not ids:
            return np.zeros_like(labels)
        centroids = _unit(np.stack([embeddings[labels == i].mean(axis=0) for i in ids]))
        noise = labels < 0
        if noise.any():  # HDBSCAN's outliers: the nearest speaker, not a speaker of their own
            labels[noise] = np.array(ids)[np.argmax(_unit(embeddings[noise]) @ centroids.T, axis=1)]
            continue
        if len(ids) <= most:
            return labels
        affinity = centroids @ centroids.T
        np.fill_diagonal(affinity, -np.inf)
        a, b = np.unravel_index(np.argmax(affinity), affinity.shape)
        labels[labels == ids[b]] = ids[a]
