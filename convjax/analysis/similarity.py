"""Photo search with a trained network: images are near when their penultimate features point the
same way (cosine similarity), and a good embedding puts same-class images near each other."""
import numpy as np


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
  """[n, d] -> rows scaled to length 1 (all-zero rows stay zero)."""
  norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
  return embeddings / np.maximum(norms, 1e-12)


def nearest(embeddings: np.ndarray, query: int, k: int) -> tuple[np.ndarray, np.ndarray]:
  """The k rows most cosine-similar to row `query`, itself excluded: (indices [k], similarities [k]),
  most similar first."""
  unit = unit_rows(embeddings.astype(np.float32))
  similarity = unit @ unit[query]
  similarity[query] = -np.inf
  order = np.argsort(-similarity, kind='stable')[:k]
  return order, similarity[order]


def precision_at_k(embeddings: np.ndarray, labels: np.ndarray, k: int,
                   block: int = 1024) -> float:
  """Mean over every query of the fraction of its k cosine-nearest neighbours (itself excluded)
  that share its label. Computed in row blocks, so 10,000 queries never need a 10,000 x 10,000
  similarity matrix at once."""
  unit = unit_rows(embeddings.astype(np.float32))
  hits = 0
  for start in range(0, len(unit), block):
    rows = np.arange(start, min(start + block, len(unit)))
    similarity = unit[rows] @ unit.T
    similarity[np.arange(len(rows)), rows] = -np.inf  # A query is not its own neighbour.
    neighbours = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    hits += int(np.sum(labels[neighbours] == labels[rows, None]))
  return hits / (len(unit) * k)


def pca(embeddings: np.ndarray, dims: int = 2) -> np.ndarray:
  """[n, d] -> [n, dims]: the centred embeddings projected on their top principal axes."""
  centred = embeddings - embeddings.mean(0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  return centred @ vt[:dims].T


def tsne(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
  """[n, d] -> [n, 2] with scikit-learn's t-SNE (slow: minutes for 10,000 points on a CPU)."""
  from sklearn.manifold import TSNE
  return TSNE(2, init='pca', random_state=seed).fit_transform(embeddings)
