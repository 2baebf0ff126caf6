"""Train tokenizers with the `tokenizers` library and wrap them as `PreTrainedTokenizerFast` with the right specials.

- `train_wordpiece`: BERT-style WordPiece ([PAD] [UNK] [CLS] [SEP] [MASK], `##` continuations, [CLS] a [SEP] b [SEP]).
- `train_bpe`: a joint byte-level BPE over source and target text for seq2seq (<pad> <s> </s> <unk>).
- `train_word_level`: a word vocabulary with a frequency cut-off and size limit (ELMo's softmax vocabulary).
- `load_or_train_tokenizer`: a run's tokenizer: the one given, the one its first run trained, or a new one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from toolkit.errors import UserError

BERT_SPECIALS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
SEQ2SEQ_SPECIALS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def batch_iterator(dataset, columns: str | list[str], batch_size: int = 1000) -> Iterator[list[str]]:
    """Texts of one or more columns of a `datasets.Dataset` (or any iterable of dicts), in lists."""
    columns = [columns] if isinstance(columns, str) else columns
    if hasattr(dataset, "iter"):
        for batch in dataset.iter(batch_size=batch_size):
            for column in columns:
                yield [t for t in batch[column] if t]
    else:
        for row in dataset:
            yield [row[c] for c in columns if row.get(c)]


def _checked(texts: Iterable) -> Iterator:
    count = 0
    for item in texts:
        count += len(item) if isinstance(item, list) else 1
        yield item
    if count == 0:
        raise UserError("cannot train a tokenizer on an empty corpus (no non-empty text found)")


def train_wordpiece(
    texts: Iterable | Callable[[], Iterable], vocab_size: int = 30522, lowercase: bool = True, min_frequency: int = 2
):
    """A BERT WordPiece tokenizer trained on `texts` (strings or lists of strings), the same for the same texts.

    The `tokenizers` trainer gives the `##` continuation tokens ids in hash-map order and breaks ties between equally
    frequent merges by id, so two trainings on the same text can differ (huggingface/tokenizers#1794). Here a first
    pass over the texts finds every continuation character, and they are given fixed ids before training; the
    trainer then only ever compares deterministic ids. `texts` is read twice: pass a list, or a function returning a
    fresh iterable (a one-shot iterator is read into a list).
    """
    if not callable(texts) and not isinstance(texts, (list, tuple)):
        texts = list(texts)
    passes = texts if callable(texts) else (lambda: texts)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    continuations = sorted({"##" + c for word in _words(tok, passes()) for c in word[1:]})
    specials = list(BERT_SPECIALS.values())
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials + continuations
    )
    tok.train_from_iterator(_checked(passes()), trainer=trainer)
    spec = json.loads(tok.to_str())  # the continuations were only special to fix their ids: make them plain tokens
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] in specials]
    tok = Tokenizer.from_str(json.dumps(spec))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=512,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        **BERT_SPECIALS,
    )


def _words(tok: Tokenizer, texts: Iterable) -> Iterator[str]:
    """The words the trainer sees: each text normalised and pre-tokenized as `tok` does."""
    for item in texts:
        for text in item if isinstance(item, list) else [item]:
            yield from (w for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)))


def train_bpe(texts: Iterable, vocab_size: int = 16000, min_frequency: int = 2):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    # decoding drops the space the pre-tokenizer put before the first word: "A dog", not " A dog"
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(content=" ", left=1, right=0)])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SEQ2SEQ_SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_checked(texts), trainer=trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=1024, **SEQ2SEQ_SPECIALS)


def train_word_level(texts: Iterable, max_size: int = 50000, min_frequency: int = 1, lowercase: bool = False):
    """Word vocabulary: the `max_size` most frequent words seen at least `min_frequency` times, plus specials."""
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    trainer = trainers.WordLevelTrainer(
        vocab_size=max_size, min_frequency=min_frequency, special_tokens=list(SEQ2SEQ_SPECIALS.values())
    )
    tok.train_from_iterator(_checked(texts), trainer=trainer)
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=100000, **SEQ2SEQ_SPECIALS)


def load_or_train_tokenizer(accelerator, source: str | None, tokenizer_dir: str, train: Callable, reuse: bool):
    """The run's tokenizer: `source` (a folder or Hub name) when given; else the one saved in `tokenizer_dir` by the
    run a resumed run continues (`reuse`), else `train()`'s, trained on the main process and saved there."""
    from transformers import AutoTokenizer

    with accelerator.main_process_first():
        if source:
            return AutoTokenizer.from_pretrained(source)
        if accelerator.is_main_process and not (reuse and os.path.isdir(tokenizer_dir)):
            train().save_pretrained(tokenizer_dir)
        return AutoTokenizer.from_pretrained(tokenizer_dir)
