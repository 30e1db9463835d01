"""Text as bytes: Debian's fortune files, for sentence-level language identification and topic
classification.

Every text is its UTF-8 bytes, cut or zero-padded to a fixed length: uint8 [length, 1], one
channel of byte codes 1..255 (0 pads; no text holds a NUL). Bytes need no vocabulary, every
script (Latin, Cyrillic, Chinese) is covered, and a character-level net reads multi-byte
characters as the short byte patterns they are.

Datasets (Debian packages, installed by .ci/setup; FORTUNES_DIR):
- `fortunes_language`: quotes in 12 languages (`fortunes` and `fortunes-min` for English,
  `fortunes-de`, `-es`, `-it`, `-pl`, `-ru`, `-cs`, `-zh`, `-eo`, `-br` (Brazilian Portuguese),
  `-bg`, `-ga`); the label is the quote's language.
- `fortunes_topic`: the English quotes of the categories with at least MIN_TOPIC_QUOTES quotes
  (the file a quote comes from is its topic).
- `words_language`: single words of 14 languages from Debian's word lists (DICT_DIR; `wamerican`
  and `wbritish`, `wfrench`, `wngerman`, `wspanish`, `witalian`, `wportuguese` and `wbrazilian`,
  `wdutch`, `wdanish`, `wswedish`, `wcatalan`, `wfaroese`, `wgalician-minimos`, `wnorwegian`
  (bokmål), `wpolish`): WORDS_PER_LANGUAGE of each. A word in the lists of several languages
  ("radio", "film") has no one answer and is left out.

Online, TFDS's `ag_news_subset` (AG News, the char-CNN paper's data) and `imdb_reviews` are read
the same way, at the paper's 1,014 bytes, with TFDS's splits (`load_tfds_text`).

Splits are deterministic and deduplicated: identical texts (after collapsing whitespace) are kept
once, and a text is a test text when the SHA-256 of its bytes falls in the lowest TEST_FRACTION of
hashes, so the same text is always on the same side, on every machine.
"""
import collections
import hashlib
import heapq
import os
import re

import numpy as np

from convjax import errors
from convjax.data import datasets

FORTUNES_DIR = '/usr/share/games/fortunes'
TEST_FRACTION = 0.1
MIN_TOPIC_QUOTES = 300
MAX_QUOTE_BYTES = 1024  # Longer entries are ASCII art or whole stories, not quotes.
# The English categories: the `fortunes` package's 36 files and `fortunes-min`'s 3.
ENGLISH = ('art', 'ascii-art', 'computers', 'cookie', 'debian', 'definitions', 'disclaimer',
           'drugs', 'education', 'ethnic', 'food', 'fortunes', 'goedel', 'humorists', 'kids',
           'knghtbrd', 'law', 'linux', 'linuxcookie', 'literature', 'love', 'magic', 'medicine',
           'men-women', 'miscellaneous', 'news', 'paradoxum', 'people', 'perl', 'pets',
           'platitudes', 'politics', 'pratchett', 'riddles', 'science', 'songs-poems', 'sports',
           'startrek', 'tao', 'translate-me', 'wisdom', 'work', 'zippy')
# Language -> (Debian package, fortune files relative to FORTUNES_DIR: a directory means all of
# its files).
LANGUAGES = {
    'en': ('fortunes', ENGLISH), 'de': ('fortunes-de', ('de',)), 'es': ('fortunes-es', ('es',)),
    'it': ('fortunes-it', ('it',)), 'pl': ('fortunes-pl', ('pl',)),
    'ru': ('fortunes-ru', ('ru',)), 'cs': ('fortunes-cs', ('cs',)),
    'zh': ('fortunes-zh', ('chinese', 'song100', 'tang300')), 'eo': ('fortunes-eo', ('eo',)),
    'pt-BR': ('fortunes-br', ('brasil',)), 'bg': ('fortunes-bg', ('bg',)),
    'ga': ('fortunes-ga', ('ga',)),
}


DICT_DIR = '/usr/share/dict'
WORDS_PER_LANGUAGE = 10_000
MAX_WORD_BYTES = 32
# Language -> (Debian packages, word lists relative to DICT_DIR). English and Portuguese pool
# their two spellings; a word is a word of each list that holds it.
WORD_LISTS = {
    'en': (('wamerican', 'wbritish'), ('american-english', 'british-english')),
    'fr': (('wfrench',), ('french',)), 'de': (('wngerman',), ('ngerman',)),
    'es': (('wspanish',), ('spanish',)), 'it': (('witalian',), ('italian',)),
    'pt': (('wportuguese', 'wbrazilian'), ('portuguese', 'brazilian')),
    'nl': (('wdutch',), ('dutch',)), 'da': (('wdanish',), ('danish',)),
    'sv': (('wswedish',), ('swedish',)), 'ca': (('wcatalan',), ('catalan',)),
    'fo': (('wfaroese',), ('faroese',)), 'gl': (('wgalician-minimos',), ('galician-minimos',)),
    'no': (('wnorwegian',), ('bokmaal',)), 'pl': (('wpolish',), ('polish',)),
}


class TextError(errors.UserError, ValueError):
  """A text that cannot be classified: empty, not UTF-8, with control bytes, or too long."""


def encode(text: str, length: int, source: str = 'the text') -> np.ndarray:
  """A text -> uint8 [length, 1], its UTF-8 bytes zero-padded. Refuses, in one sentence, an empty
  text, a NUL or other control character (other than tab and newline: the unknown characters of
  a byte-level model, which no training text holds), text that is not valid UTF-8, and a text
  longer than `length` bytes: classifying its first part only would answer another question."""
  if not text.strip():
    raise TextError(f'{source} is empty; give a line of text')
  bad = [c for c in text if ord(c) < 32 and c not in '\t\n' or ord(c) == 127]
  if bad:
    raise TextError(f'{source} holds the control character {bad[0]!r}, which no training text '
                    'has; remove it')
  try:
    data = text.encode('utf-8')
  except UnicodeEncodeError:  # Undecodable bytes from the command line arrive as surrogates.
    raise TextError(f'{source} is not valid UTF-8; re-encode it') from None
  if len(data) > length:
    raise TextError(f'{source} is {len(data)} bytes long in UTF-8; this model reads at most '
                    f'{length} (shorten it, or classify its parts)')
  return _cut(text, length).copy()


def decode(codes: np.ndarray) -> str:
  """uint8 [length, 1] -> the text (its bytes up to the padding; broken characters replaced)."""
  return bytes(codes[:, 0]).rstrip(b'\0').decode('utf-8', errors='replace')


def read_fortunes(path: str) -> list[str]:
  """The quotes of one fortune file: entries separated by lines holding only '%', with
  whitespace collapsed; empty entries and those over MAX_QUOTE_BYTES dropped. Invalid UTF-8
  bytes (a few files have Latin-1 ones) are replaced."""
  with open(path, 'rb') as f:
    content = f.read().decode('utf-8', errors='replace').replace('\r\n', '\n')
  quotes = [' '.join(entry.split()) for entry in re.split(r'^%$', content, flags=re.M)]
  return [q for q in quotes if q and len(q.encode('utf-8')) <= MAX_QUOTE_BYTES]


def _fortune_files(root: str, name: str) -> list[str]:
  """The fortune files at root/name: the file itself, or every file of the directory (not the
  .dat indexes, nor the .u8 copies)."""
  path = os.path.join(root, name)
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    return []
  return [os.path.join(path, f) for f in sorted(os.listdir(path))
          if os.path.isfile(os.path.join(path, f)) and not f.endswith(('.dat', '.u8'))]


def _missing(packages: list[str], root: str,
             what: str = 'fortune files') -> datasets.DatasetNotFoundError:
  return datasets.DatasetNotFoundError(
      f"no {what} of {', '.join(packages)} in {root}; install them with `sudo apt-get "
      f"install {' '.join(packages)}` (Debian, Ubuntu), or pass --config.data_dir=DIR holding "
      'the same files')


def is_test(text: str) -> bool:
  """Whether `text` belongs to the test split: the first 8 bytes of its SHA-256, as a fraction of
  2^64, below TEST_FRACTION."""
  digest = hashlib.sha256(text.encode('utf-8')).digest()
  return int.from_bytes(digest[:8], 'big') < TEST_FRACTION * 2 ** 64


def labelled_texts(name: str, root: str | None = None) -> tuple[list[tuple[str, int]], tuple]:
  """(text, label) pairs of dataset `name`, each text once, and the label names."""
  root = root or FORTUNES_DIR
  if name == 'fortunes_language':
    groups = {language: [f for file in files for f in _fortune_files(root, file)]
              for language, (_, files) in LANGUAGES.items()}
    missing = [LANGUAGES[language][0] for language, files in groups.items() if not files]
  else:
    groups = {topic: _fortune_files(root, topic) for topic in ENGLISH}
    missing = ['fortunes'] if not any(groups.values()) else []
  if missing:
    raise _missing(missing, root)
  quotes = {label: [q for path in files for q in read_fortunes(path)]
            for label, files in groups.items()}
  if name == 'fortunes_topic':
    quotes = {topic: q for topic, q in quotes.items() if len(set(q)) >= MIN_TOPIC_QUOTES}
  names = tuple(quotes)
  seen, pairs = {}, []
  for label, texts in enumerate(quotes.values()):
    for text in texts:
      if text not in seen:  # A text in two files keeps its first label.
        seen[text] = label
        pairs.append((text, label))
  return pairs, names


def read_word_list(path: str) -> set[str]:
  """The words of one list, one per line: UTF-8, or ISO-8859-1 where the file is not UTF-8 (the
  Swedish and Norwegian lists). English possessives ("cat's") are left out: they double the list
  with one pattern."""
  with open(path, 'rb') as f:
    content = f.read()
  try:
    words = content.decode('utf-8')
  except UnicodeDecodeError:
    words = content.decode('latin-1')
  return {w.strip() for w in words.splitlines()
          if w.strip() and not w.strip().endswith("'s")
          and len(w.strip().encode('utf-8')) <= MAX_WORD_BYTES}


def _sample_key(word: str) -> bytes:
  """The order words are sampled in: a hash unrelated to is_test's, so the sample splits 90/10."""
  return hashlib.sha256(b'sample:' + word.encode('utf-8')).digest()


def labelled_words(root: str | None = None) -> tuple[list[tuple[str, int]], tuple]:
  """(word, language) pairs: WORDS_PER_LANGUAGE words of each language, the first by
  _sample_key among its unambiguous words (a word found in the lists of two or more languages
  is ambiguous and left out of all of them); and the language names."""
  root = root or DICT_DIR
  paths = {language: [os.path.join(root, name) for name in names]
           for language, (_, names) in WORD_LISTS.items()}
  missing = [package for language, (packages, _) in WORD_LISTS.items()
             for package, path in zip(packages, paths[language]) if not os.path.isfile(path)]
  if missing:
    raise _missing(missing, root, 'word lists')
  words = {language: set().union(*map(read_word_list, files)) for language, files in paths.items()}
  counts = collections.Counter(word for vocabulary in words.values() for word in vocabulary)
  pairs = []
  for label, vocabulary in enumerate(words.values()):
    chosen = heapq.nsmallest(WORDS_PER_LANGUAGE, (w for w in vocabulary if counts[w] == 1),
                             key=_sample_key)
    pairs += [(word, label) for word in chosen]
  return pairs, tuple(WORD_LISTS)


def load_fortunes(info: datasets.DatasetInfo, data_dir: str | None) -> datasets.Dataset:
  """Fortune quotes (or, for words_language, words) as uint8 [n, length, 1] byte codes (cut to
  info's length) and labels."""
  pairs, names = (labelled_words(data_dir) if info.name == 'words_language' else
                  labelled_texts(info.name, data_dir))
  if names != info.label_names:
    raise datasets.DatasetNotFoundError(
        f"the files in {data_dir or 'their folder'} give the classes {', '.join(names)}, "
        f"not the catalogue's {', '.join(info.label_names)}")
  length = info.image_shape[0]
  split = lambda test: datasets.Split(
      np.stack([_cut(text, length) for text, _ in pairs if is_test(text) == test]),
      np.array([label for text, label in pairs if is_test(text) == test], np.int32))
  return datasets.Dataset(info, split(False), split(True))


# TFDS's text datasets (for users with internet): each example's text, from its features.
TFDS_TEXT = {
    'ag_news_subset': lambda example: f"{example['title']} {example['description']}",
    'imdb_reviews': lambda example: example['text'],
}


def load_tfds_text(info: datasets.DatasetInfo, data_dir: str | None,
                   download: bool) -> datasets.Dataset:
  """A TFDS text dataset (AG News: title and description, as Zhang et al. read it; IMDB reviews)
  as uint8 [n, length, 1] byte codes cut to info's length, with TFDS's own train and test splits."""
  text_of = TFDS_TEXT[info.name]
  def split(source) -> datasets.Split:
    examples = [source[i] for i in range(len(source))]
    return datasets.Split(
        np.stack([_cut(_as_str(text_of(ex)), info.image_shape[0]) for ex in examples]),
        np.array([ex['label'] for ex in examples], np.int32))
  train, test = (datasets.tfds_source(info, name, data_dir, download)
                 for name in ('train', info.eval_split))
  return datasets.Dataset(info, split(train), split(test))


def _as_str(value) -> str:
  return value.decode('utf-8', errors='replace') if isinstance(value, bytes) else str(value)


def _cut(text: str, length: int) -> np.ndarray:
  """uint8 [length, 1]: the text's first `length` UTF-8 bytes, zero-padded."""
  data = text.encode('utf-8')[:length]
  return np.frombuffer(data.ljust(length, b'\0'), np.uint8)[:, None]
