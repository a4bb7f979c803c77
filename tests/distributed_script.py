"""The start of the training scripts that the multi-process tests launch (DDP, FSDP)."""

import textwrap

# imports and the pre-fixed rollouts every launched script shares; a test appends its main block
PRELUDE = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)
    from selfdistill.train.config import load_config
    from selfdistill.train.loop import Trainer
    from selfdistill.train.rollouts import FixedRollouts

    def responses(tok, prompt_ids, j):
        # pre-fixed rollouts whose length depends on the prompt: a per-process mean would differ
        n = 3 + (len(prompt_ids) * 7 + j) % 9
        return [(len(prompt_ids) * 31 + 17 * t) % 1000 + 100 for t in range(n)]
    """
)
