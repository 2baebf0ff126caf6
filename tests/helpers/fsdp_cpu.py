"""Wrap one toolkit model with accelerate's FSDP2 preparation on CPU (gloo; one process, or every rank under torchrun),
train two steps, gather the full state dict and load a full state dict back. Prints `ok <loss>` on success.

accelerate only turns FSDP on for GPU launches, so this forces its FSDP2 path on CPU processes: it exercises what
broke on the GPU (a module sharded twice, an embedding shared across FSDP groups, fp32 activations meeting bf16
weights, loading the best weights into DTensor parameters). The real check on CUDA is benchmarks/gpu_check.sh.

    python tests/helpers/fsdp_cpu.py FAMILY PORT [MIXED_PRECISION]
    torchrun --nproc_per_node 2 --master_port PORT tests/helpers/fsdp_cpu.py FAMILY PORT [MIXED_PRECISION]
"""

import os
import sys

import torch
import torch.distributed as dist

family, port = sys.argv[1], sys.argv[2]
mixed_precision = sys.argv[3] if len(sys.argv) > 3 else "bf16"
if "RANK" not in os.environ:  # one process; under torchrun every rank holds a real shard
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
dist.init_process_group("gloo")

from accelerate import Accelerator  # noqa: E402
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin  # noqa: E402

from toolkit.training import load_full_state_dict  # noqa: E402

plugin = FullyShardedDataParallelPlugin(
    fsdp_version=2, auto_wrap_policy="transformer_based_wrap", state_dict_type="SHARDED_STATE_DICT",
    cpu_ram_efficient_loading=True, reshard_after_forward=True,
)  # fmt: skip
accelerator = Accelerator(cpu=True, fsdp_plugin=plugin, mixed_precision=mixed_precision)


def force_fsdp():
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin


force_fsdp()
if mixed_precision != "no":
    plugin.set_mixed_precision(mixed_precision)

torch.manual_seed(0)
ids = torch.randint(3, 100, (2, 8))
if family == "bert":
    from toolkit.models.bert import ToolkitBertConfig, ToolkitBertForMaskedLM

    config = ToolkitBertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    model, batch = ToolkitBertForMaskedLM(config), {"input_ids": ids, "labels": ids}
elif family == "transformer":
    from toolkit.models.transformer import TransformerSeq2SeqConfig, TransformerSeq2SeqForConditionalGeneration

    config = TransformerSeq2SeqConfig(
        vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, share_embeddings=True,
    )  # fmt: skip
    model, batch = TransformerSeq2SeqForConditionalGeneration(config), {"input_ids": ids, "labels": ids[:, :6].clone()}
elif family == "rnn_seq2seq":
    from toolkit.models.rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration

    config = RNNSeq2SeqConfig(
        vocab_size=100, embedding_size=16, encoder_hidden_size=16, hidden_size=32,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )  # fmt: skip
    model, batch = RNNSeq2SeqForConditionalGeneration(config), {"input_ids": ids, "labels": ids[:, :6].clone()}
elif family == "bilstm":
    from toolkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification

    config = BiLSTMConfig(vocab_size=100, embedding_size=16, hidden_size=16, num_labels=2, pad_token_id=0)
    model, batch = BiLSTMForSequenceClassification(config), {"input_ids": ids, "labels": torch.tensor([0, 1])}
elif family == "elmo":
    from toolkit.models.elmo import ElmoConfig, ElmoForLanguageModeling

    config = ElmoConfig(
        vocab_size=100, token_embedder="word", num_layers=2, cell_size=32, projection_dim=16,
        softmax_type="adaptive", adaptive_cutoffs=[20, 50], cell_clip=None, proj_clip=None,
    )  # fmt: skip
    model, batch = ElmoForLanguageModeling(config), {"input_ids": ids, "labels": ids}
else:
    raise SystemExit(f"unknown family {family}")

full = {k: v.clone() for k, v in model.state_dict().items()}
model.eval()
with torch.no_grad():
    initial = model(**batch).loss.item()
model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
model, optimizer = accelerator.prepare(model, optimizer)
for _ in range(2):
    loss = model(**batch).loss
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
force_fsdp()  # prepare() resets the distributed type of a CPU process
assert accelerator.is_fsdp2
load_full_state_dict(accelerator, model, full)  # back to the initial weights
model.eval()
with torch.no_grad():
    reloaded = model(**batch).loss.item()
print(f"ok trained {loss.item():.5f} initial {initial:.5f} reloaded {reloaded:.5f}")
dist.barrier()
dist.destroy_process_group()  # a clean shutdown: tearing gloo down at interpreter exit can abort ("terminate called")
