"""Reload a recipe's output folder with `from_pretrained` (as a user would) and print one line; used by gpu_check.sh.

The class named in the saved config's `architectures` is loaded, and any weight that is missing, unexpected or of the
wrong shape fails the check: a sharded (FSDP / DeepSpeed ZeRO-3) save that gathered nothing, or only one rank's
shard, would otherwise load "fine" with randomly initialised weights.

python benchmarks/reload_check.py OUTPUT_DIR
"""

import importlib
import sys

import transformers

import toolkit  # noqa: F401  (registers the toolkit model types)


def main(path: str) -> None:
    config = transformers.AutoConfig.from_pretrained(path)
    family = config.model_type.removeprefix("toolkit_")
    cls = getattr(importlib.import_module(f"toolkit.models.{family}"), config.architectures[0])
    model, info = cls.from_pretrained(path, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise SystemExit(f"reload FAILED: {path}: {bad}")
    print(f"reload ok: {cls.__name__}, {sum(p.numel() for p in model.parameters())} params, all weights matched")


if __name__ == "__main__":
    main(sys.argv[1])
