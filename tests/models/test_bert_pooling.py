"""`classifier_pooling`: sequence classification reads the [CLS] pooler (default, as BERT) or the masked mean of
the last layer (for briefly pretrained MLM-only encoders)."""

import pytest
import torch

from tests.models.test_bert import tiny_config
from toolkit.models.bert import ToolkitBertConfig, ToolkitBertForSequenceClassification


def test_mean_pooling_ignores_padding_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = ToolkitBertForSequenceClassification(tiny_config(classifier_pooling="mean", num_labels=3)).eval()
    ids = torch.randint(5, 99, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], dim=1).long()
    with torch.no_grad():
        alone = model(input_ids=ids).logits
        with_pad = model(input_ids=padded, attention_mask=mask).logits
        hidden = model.bert(input_ids=ids).last_hidden_state
    assert alone.shape == (1, 3)
    torch.testing.assert_close(with_pad, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone, model.classifier(hidden.mean(1)))  # the mean, not the pooler
    model.save_pretrained(tmp_path)
    assert ToolkitBertConfig.from_pretrained(tmp_path).classifier_pooling == "mean"
    assert tiny_config().classifier_pooling == "cls"
    with pytest.raises(ValueError, match="classifier_pooling"):
        tiny_config(classifier_pooling="max")
