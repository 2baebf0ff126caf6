"""Word tokenizer of the ELMo family: words for the softmax vocabulary plus the characters of every word.

- Splitting: whitespace, then every punctuation character on its own (`tokenizers` pre-tokenizers), NFC-normalised.
- `input_ids`: a `WordLevel` vocabulary (most frequent words with a frequency cut-off / size limit, plus `<pad>`,
  `<unk>`, `<s>`, `</s>`), used by the softmax and by the word-embedding input. Texts are wrapped in `<s> ... </s>`.
- `char_ids` (B, T, max_characters_per_token): UTF-8 bytes of the *original* word (also for `<unk>` words) between
  begin/end-of-word markers, as in bilm-tf (`UnicodeCharsVocabulary`), ids shifted by one so 0 pads whole tokens.
- `task_word_ids` (only after `set_task_words`): ids of the lower-cased words in a task vocabulary built from a
  task's training texts, for the classifier's context-independent word channel (Peters et al., 2018, section 3.3).
  The list of words is saved in `tokenizer_config.json` (`task_words`) and comes back with `from_pretrained`.

Only `tokenizers` and `transformers` are imported so this file ships with checkpoints (`trust_remote_code=True`).
"""

import os
from collections.abc import Iterable

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer
from transformers import PreTrainedTokenizerFast

# bilm-tf character markers (byte values 0..255 are the UTF-8 bytes); every id below is stored +1, 0 = padding token
BEGIN_OF_WORD_CHAR = 256
END_OF_WORD_CHAR = 257
BEGIN_OF_SENTENCE_CHAR = 258
END_OF_SENTENCE_CHAR = 259
PADDING_CHAR = 260
SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]
TASK_INPUT_NAME = "task_word_ids"


def word_to_char_ids(word: str, max_characters_per_token: int = 50) -> list[int]:
    """Character ids of one word: [bow, byte_1 .. byte_n, eow, pad ...] (+1), truncated to fit."""
    data = word.encode("utf-8", "ignore")[: max_characters_per_token - 2]
    ids = [PADDING_CHAR + 1] * max_characters_per_token
    ids[0] = BEGIN_OF_WORD_CHAR + 1
    for position, byte in enumerate(data, start=1):
        ids[position] = byte + 1
    ids[len(data) + 1] = END_OF_WORD_CHAR + 1
    return ids


def _marker_char_ids(marker: int, max_characters_per_token: int) -> list[int]:
    ids = [PADDING_CHAR + 1] * max_characters_per_token
    ids[0], ids[1], ids[2] = BEGIN_OF_WORD_CHAR + 1, marker + 1, END_OF_WORD_CHAR + 1
    return ids


def build_backend_tokenizer(vocab: dict[str, int] | None = None) -> Tokenizer:
    """The `tokenizers` pipeline (untrained if `vocab` is None)."""
    tokenizer = Tokenizer(
        WordLevel(vocab if vocab is not None else {t: i for i, t in enumerate(SPECIAL_TOKENS)}, unk_token="<unk>")
    )
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    return tokenizer


def _set_post_processor(tokenizer: Tokenizer) -> None:
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1", special_tokens=[("<s>", bos), ("</s>", eos)]
    )


class ElmoTokenizerFast(PreTrainedTokenizerFast):
    """Word-level tokenizer returning `input_ids`, `char_ids` and `attention_mask` (right padding)."""

    vocab_files_names = {"tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "char_ids", "attention_mask"]
    padding_side = "right"

    def __init__(
        self,
        vocab=None,
        tokenizer_file=None,
        tokenizer_object=None,
        max_characters_per_token=50,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        task_words=None,
        **kwargs,
    ):
        if tokenizer_object is None and (tokenizer_file is None or not os.path.isfile(tokenizer_file)):
            # new tokenizer, or transformers passing the vocabulary it read from tokenizer.json
            tokenizer_object = build_backend_tokenizer(vocab)
            _set_post_processor(tokenizer_object)
            tokenizer_file = None
        self.max_characters_per_token = max_characters_per_token
        super().__init__(
            tokenizer_file=tokenizer_file,
            tokenizer_object=tokenizer_object,
            max_characters_per_token=max_characters_per_token,
            unk_token=unk_token,
            pad_token=pad_token,
            bos_token=bos_token,
            eos_token=eos_token,
            **kwargs,
        )
        self.set_task_words(task_words)
        m = max_characters_per_token
        self._special_char_ids = {
            self.bos_token_id: _marker_char_ids(BEGIN_OF_SENTENCE_CHAR, m),
            self.eos_token_id: _marker_char_ids(END_OF_SENTENCE_CHAR, m),
            self.pad_token_id: [0] * m,
        }

    # ---------------------------------------------------------------------------------------------------------------
    # vocabulary
    # ---------------------------------------------------------------------------------------------------------------

    @classmethod
    def train_from_iterator(
        cls,
        texts: Iterable[str],
        vocab_size: int | None = None,
        min_frequency: int = 1,
        max_characters_per_token: int = 50,
        **kwargs,
    ) -> "ElmoTokenizerFast":
        """Build the word vocabulary: the `vocab_size` (including the 4 special tokens) most frequent words seen at
        least `min_frequency` times, ids sorted by decreasing frequency (as the adaptive softmax expects)."""
        backend = build_backend_tokenizer()
        trainer = WordLevelTrainer(
            vocab_size=vocab_size or 100_000_000,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
        )
        backend.train_from_iterator(texts, trainer=trainer)
        _set_post_processor(backend)
        return cls(tokenizer_object=backend, max_characters_per_token=max_characters_per_token, **kwargs)

    def set_task_words(self, words: list[str] | None) -> None:
        """Use `words` (ids 0-3 are `<pad> <unk> <s> </s>`) as the task vocabulary, or none (`None`)."""
        self.task_words = list(words) if words else None
        self._task_word_index = {w: i for i, w in enumerate(self.task_words or [])}
        self.init_kwargs["task_words"] = self.task_words  # saved in tokenizer_config.json
        names = [n for n in type(self).model_input_names if n != TASK_INPUT_NAME]
        self.model_input_names = names + ([TASK_INPUT_NAME] if self.task_words else [])

    def build_task_words(self, texts: Iterable[str], vocab_size: int = 20000, min_frequency: int = 1) -> list[str]:
        """The task vocabulary of `texts`: special tokens, then the lower-cased words seen at least `min_frequency`
        times, most frequent first (ties alphabetical), `vocab_size` entries at most. Set it with `set_task_words`."""
        counts: dict[str, int] = {}
        for text in texts:
            for word in self.split_words(text or ""):
                word = word.lower()
                counts[word] = counts.get(word, 0) + 1
        ranked = sorted((w for w, c in counts.items() if c >= min_frequency), key=lambda w: (-counts[w], w))
        return SPECIAL_TOKENS + ranked[: max(0, vocab_size - len(SPECIAL_TOKENS))]

    def _task_word_ids_of_encoding(self, encoding, source) -> list[int]:
        """Task-vocabulary id of every position of one `tokenizers.Encoding` (see `_char_ids_of_encoding`)."""
        index, specials = self._task_word_index, {self.bos_token_id: 2, self.eos_token_id: 3, self.pad_token_id: 0}
        result = []
        for position, token_id in enumerate(encoding.ids):
            sequence = encoding.sequence_ids[position]
            if sequence is None or encoding.special_tokens_mask[position]:
                result.append(specials.get(token_id, 1))
                continue
            text = source[sequence] if isinstance(source, tuple) else source
            start, end = encoding.offsets[position]
            if not isinstance(text, str):
                text = text[encoding.word_ids[position]]
            result.append(index.get(text[start:end].lower(), 1))
        return result

    # ---------------------------------------------------------------------------------------------------------------
    # characters
    # ---------------------------------------------------------------------------------------------------------------

    def split_words(self, text: str) -> list[str]:
        """The words of `text` as this tokenizer splits them (no special tokens, no vocabulary lookup)."""
        backend = self.backend_tokenizer
        normalized = backend.normalizer.normalize_str(text) if backend.normalizer is not None else text
        return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalized)]

    def words_to_char_ids(self, words: list[str]) -> list[list[int]]:
        """Character ids of a list of words (B=1 helper for streams of words)."""
        specials = {
            self.bos_token: self._special_char_ids[self.bos_token_id],
            self.eos_token: self._special_char_ids[self.eos_token_id],
        }
        return [specials.get(w) or word_to_char_ids(w, self.max_characters_per_token) for w in words]

    def _char_ids_of_encoding(self, encoding, source) -> list[list[int]]:
        """Character ids for every position of one `tokenizers.Encoding`; `source` is the text (or the list of words
        if pre-tokenized), or a pair of them, that produced it."""
        result = []
        for position, token_id in enumerate(encoding.ids):
            sequence = encoding.sequence_ids[position]
            if sequence is None or encoding.special_tokens_mask[position]:
                chars = self._special_char_ids.get(token_id)
                if chars is None:
                    chars = word_to_char_ids(encoding.tokens[position], self.max_characters_per_token)
                result.append(chars)
                continue
            text = source[sequence] if isinstance(source, tuple) else source
            start, end = encoding.offsets[position]
            if not isinstance(text, str):  # pre-tokenized: offsets are within the word
                text = text[encoding.word_ids[position]]
            result.append(word_to_char_ids(text[start:end], self.max_characters_per_token))
        return result

    def _encode_plus(self, text, text_pair=None, **kwargs):
        return_tensors = kwargs.pop("return_tensors", None)
        encoded = super()._encode_plus(text, text_pair=text_pair, return_tensors=None, **kwargs)
        is_split = kwargs.get("is_split_into_words", False)
        batched = isinstance(text, (list, tuple)) and (not is_split or (text and isinstance(text[0], (list, tuple))))
        if batched:
            sources = list(zip(text, text_pair)) if text_pair is not None else list(text)
        else:
            sources = [(text, text_pair) if text_pair is not None else text]
        sample_of = encoded.get("overflow_to_sample_mapping", list(range(len(encoded.encodings))))
        char_ids = [
            self._char_ids_of_encoding(encoding, sources[sample_of[i]]) for i, encoding in enumerate(encoded.encodings)
        ]
        task_ids = None
        if self.task_words:
            task_ids = [
                self._task_word_ids_of_encoding(encoding, sources[sample_of[i]])
                for i, encoding in enumerate(encoded.encodings)
            ]
        if not batched and "overflow_to_sample_mapping" not in encoded:
            if return_tensors is None:
                char_ids = char_ids[0]
                task_ids = task_ids[0] if task_ids is not None else None
            else:  # tensors of one example keep a batch dimension, as in the parent class
                for key in list(encoded.keys()):
                    encoded[key] = [encoded[key]]
        encoded["char_ids"] = char_ids
        if task_ids is not None:
            encoded[TASK_INPUT_NAME] = task_ids
        encoded.convert_to_tensors(tensor_type=return_tensors)
        return encoded

    def _pad(
        self,
        encoded_inputs,
        max_length=None,
        padding_strategy=None,
        pad_to_multiple_of=None,
        padding_side=None,
        return_attention_mask=None,
    ):
        length_before = len(encoded_inputs[self.model_input_names[0]])
        encoded_inputs = super()._pad(
            encoded_inputs,
            max_length=max_length,
            padding_strategy=padding_strategy,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_attention_mask=return_attention_mask,
        )
        difference = len(encoded_inputs[self.model_input_names[0]]) - length_before
        if "char_ids" in encoded_inputs and difference > 0:
            char_ids = [list(c) for c in encoded_inputs["char_ids"]]
            padding = [[0] * self.max_characters_per_token for _ in range(difference)]
            side = padding_side if padding_side is not None else self.padding_side
            encoded_inputs["char_ids"] = char_ids + padding if side == "right" else padding + char_ids
        if TASK_INPUT_NAME in encoded_inputs and difference > 0:
            task_ids = list(encoded_inputs[TASK_INPUT_NAME])
            side = padding_side if padding_side is not None else self.padding_side
            padding = [0] * difference
            encoded_inputs[TASK_INPUT_NAME] = task_ids + padding if side == "right" else padding + task_ids
        return encoded_inputs


__all__ = ["ElmoTokenizerFast", "word_to_char_ids"]
