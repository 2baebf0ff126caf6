"""Copy a saved model folder with its floating-point weights cast to fp16, to bring a GPU-trained model back through a
size-limited channel (gpu_session.sh). `from_pretrained(..., dtype=torch.float32)` restores fp32 on load.

    python benchmarks/export_half.py MODEL_DIR OUT_DIR
"""

import os
import shutil
import sys

from safetensors.torch import load_file, save_file


def main(src: str, dst: str) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints", "*.tmp"), dirs_exist_ok=True)
    path = os.path.join(dst, "model.safetensors")
    tensors = load_file(path)
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(half, path, metadata={"format": "pt"})
    print(f"{dst}: {sum(v.numel() for v in half.values()) / 1e6:.2f}M values in fp16")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
