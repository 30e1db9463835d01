"""The bar a text convnet must clear: a character n-gram linear classifier on the same split.

`char_ngram_accuracy` reads the same bytes the net reads (each text cut to the dataset's length),
counts its character 1- to 3-grams into 2^20 hashed features (scikit-learn's HashingVectorizer,
l2-normalised), and fits a multinomial logistic regression by stochastic gradient descent
(SGDClassifier, log loss). This is the classic strong baseline of the char-CNN paper (Zhang et
al. 2015 compare against bag-of-n-grams linear models), and it takes seconds.
"""
import numpy as np

from convjax import errors
from convjax.data import datasets, text

BASELINES = ('', 'char_ngram')


def check(name: str, dataset: str) -> None:
  """Raises errors.InvalidValueError unless `name` is a baseline that suits `dataset`."""
  if name not in BASELINES:
    raise errors.InvalidValueError(f"unknown baseline '{name}'; valid: 'char_ngram', or '' for "
                                   'none')
  if name and datasets.get_info(dataset).modality != 'text':
    raise errors.InvalidValueError(f"baseline '{name}' classifies text; '{dataset}' holds "
                                   f'{datasets.get_info(dataset).modality}')


def char_ngram_accuracy(dataset: datasets.Dataset, ngrams=(1, 3), features: int = 2 ** 20,
                        seed: int = 0) -> float:
  """Test accuracy of a hashed character n-gram logistic regression trained on dataset.train."""
  from sklearn.feature_extraction.text import HashingVectorizer  # Imported here: only this needs it.
  from sklearn.linear_model import SGDClassifier
  vectorizer = HashingVectorizer(analyzer='char', ngram_range=ngrams, n_features=features,
                                 alternate_sign=False, norm='l2')
  texts = lambda split: vectorizer.transform([text.decode(codes) for codes in split.images])
  classifier = SGDClassifier(loss='log_loss', alpha=1e-6, max_iter=30, tol=None,
                             random_state=seed)
  classifier.fit(texts(dataset.train), dataset.train.labels)
  return float(np.mean(classifier.predict(texts(dataset.test)) == dataset.test.labels))


def evaluate(config, dataset: datasets.Dataset) -> dict:
  """{'baseline_test_accuracy': ...} of config.baseline trained and tested on `dataset`, the run's
  own split."""
  return {'baseline_test_accuracy': char_ngram_accuracy(dataset, seed=config.seed)}
