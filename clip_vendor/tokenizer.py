"""CLIP's byte-level BPE tokenizer (Radford et al., 2021, section 2.4; Sennrich et al., 2016 for BPE).

Text -> cleaned text (ftfy, HTML unescaping, whitespace, lowercase) -> pre-tokens (regex) -> bytes shown
as printable characters -> BPE merges -> ids, framed by <|startoftext|> (49406) and <|endoftext|> (49407)
and zero-padded to the 77-token context. The merges come from `bpe_simple_vocab_16e6.txt.gz` beside this
file (data from OpenAI's MIT-licensed release; see NOTICE).

    >>> tokenize("a photo of a cat")[0, :7].tolist()
    [49406, 320, 1125, 539, 320, 2368, 49407]
"""
import functools
import gzip
import html
from pathlib import Path

import ftfy
import regex
import torch

VOCAB_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
START_OF_TEXT, END_OF_TEXT = "<|startoftext|>", "<|endoftext|>"
# CLIP uses only the first 48894 merges of the file: 256 bytes x 2 (with and without the end-of-word
# marker) + 48894 merges + 2 special tokens = 49408 ids.
NUM_MERGES = 49152 - 256 - 2
# The pre-tokenizer: the special tokens, English contractions, runs of letters, single digits, and runs of
# other non-space symbols. BPE then works inside each piece, never across pieces.
PRE_TOKENIZER = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)


def bytes_to_unicode() -> dict[int, str]:
    """A reversible map from the 256 byte values to 256 printable unicode characters.

    BPE runs on bytes, so that any text (emoji, CJK, accents) is encodable with no unknown token. But the
    merges file is text, and raw bytes such as space, newline or control codes would be invisible or
    break its "a b" line format. So each byte is shown as a character: the printable Latin-1 bytes stand
    for themselves, and the other 68 bytes are moved to the unused code points 256, 257, ... in order.
    The order of this dict is also the order of the first 256 vocabulary ids.
    """
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    mapping = {b: chr(b) for b in printable}
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + len(mapping) - len(printable))
    return mapping


def clean(text: str) -> str:
    """Repair mojibake, unescape HTML (twice, for doubly escaped text), collapse whitespace, lowercase."""
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return regex.sub(r"\s+", " ", text).strip().lower()


class BPETokenizer:
    """Byte-level BPE with CLIP's vocabulary: `encode(text) -> list[int]` (without start/end tokens)."""

    def __init__(self, vocab_file: Path = VOCAB_FILE):
        with gzip.open(vocab_file, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]  # line 0 is a version header
        self.byte_encoder = bytes_to_unicode()
        symbols = list(self.byte_encoder.values())
        # Vocabulary order: bytes, bytes that end a word, one token per merge, then the special tokens.
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
        vocab += [START_OF_TEXT, END_OF_TEXT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {pair: i for i, pair in enumerate(merges)}  # earlier merges are applied first
        # Special tokens typed in the text stay whole (as in OpenAI's tokenizer).
        self.cache = {START_OF_TEXT: [START_OF_TEXT], END_OF_TEXT: [END_OF_TEXT]}

    def bpe(self, piece: str) -> list[str]:
        """Merge the characters of one pre-token into vocabulary tokens, best-ranked pair first."""
        if piece in self.cache:
            return self.cache[piece]
        # The last symbol carries the end-of-word marker, so "cat" at a word's end differs from "cat" inside.
        word = list(piece[:-1]) + [piece[-1] + "</w>"]
        while len(word) > 1:
            # 1. The adjacent pair that the merges list learned earliest.
            best = min(zip(word, word[1:]), key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break  # no adjacent pair can be merged any more
            # 2. Merge every occurrence of that pair, scanning left to right without overlaps.
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.cache[piece] = word
        return word

    def encode(self, text: str) -> list[int]:
        ids = []
        for piece in PRE_TOKENIZER.findall(clean(text)):
            piece = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[token] for token in self.bpe(piece))
        return ids


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> BPETokenizer:
    """The tokenizer over the shipped vocabulary, built on first use (reading the file takes ~1 s)."""
    return BPETokenizer()


def tokenize(texts: str | list[str], context_length: int = 77, truncate: bool = True) -> torch.Tensor:
    """Texts -> LongTensor (N, context_length): <|startoftext|> ids <|endoftext|> 0 0 ...

    Over-long texts are cut to the context with <|endoftext|> kept as the last token, or raise ValueError
    when truncate=False.
    """
    if isinstance(texts, str):
        texts = [texts]
    if context_length < 2:
        raise ValueError(f"context_length must be at least 2 (start and end tokens), got {context_length}")
    tokenizer = default_tokenizer()
    sot, eot = tokenizer.encoder[START_OF_TEXT], tokenizer.encoder[END_OF_TEXT]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)  # (N, L); 0 is the padding
    for i, text in enumerate(texts):
        ids = [sot] + tokenizer.encode(text) + [eot]
        if len(ids) > context_length:
            if not truncate:
                raise ValueError(f"text {i} ({text[:40]!r}...) is {len(ids)} tokens long, more than the "
                                 f"context length {context_length}; shorten it or pass truncate=True")
            ids = ids[:context_length - 1] + [eot]
        result[i, :len(ids)] = torch.tensor(ids)
    return result
