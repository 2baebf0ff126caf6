"""Word vocabulary for the BiLSTM baseline, trained on the task's training texts.

`train_word_tokenizer` returns a plain `PreTrainedTokenizerFast` (a `tokenizers` WordLevel model: NFKC + lowercase,
split on whitespace and punctuation), so the saved tokenizer loads with `AutoTokenizer.from_pretrained` and needs no
custom code. Ids: 0 = [PAD] (the model's `pad_token_id`), 1 = [UNK], 2 = [SEP], then words by decreasing frequency.
Sentence pairs are encoded as one sequence "a [SEP] b" by the post-processor.
"""

from collections.abc import Iterable

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer
from transformers import PreTrainedTokenizerFast

PAD, UNK, SEP = "[PAD]", "[UNK]", "[SEP]"


def train_word_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 20000,
    min_frequency: int = 1,
    lowercase: bool = True,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Build a word-level tokenizer from `texts`: the `vocab_size` most frequent words (special tokens included)
    seen at least `min_frequency` times; every other word maps to [UNK]."""
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    backend = Tokenizer(WordLevel(unk_token=UNK))
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    trainer = WordLevelTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK, SEP], show_progress=False
    )
    backend.train_from_iterator(texts, trainer=trainer)
    sep_id = backend.token_to_id(SEP)
    backend.post_processor = processors.TemplateProcessing(
        single="$A", pair=f"$A {SEP} $B:1", special_tokens=[(SEP, sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        sep_token=SEP,
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=model_max_length,
        padding_side="right",
    )
