"""train/sft.py: prompt tokens carry no loss; the loss equals a plain float64 per-example sum."""

import pytest
import torch

from selfdistill.train.sft import collate, sft_loss


@pytest.fixture(scope="module")
def tiny():
    from selfdistill.models import load_model

    torch.manual_seed(0)
    model, tokenizer = load_model("tiny-random", dtype="float32")
    return model.eval(), tokenizer


PAIRS = [([5, 6, 7], [8, 9]), ([10, 11], [12, 13, 14, 15]), ([3], [4])]


def test_collate_masks_exactly_the_response_tokens():
    ids, attn, mask = collate(PAIRS, pad_id=0)
    assert ids.shape == (3, 6)
    assert ids[0].tolist() == [5, 6, 7, 8, 9, 0] and attn[0].tolist() == [1, 1, 1, 1, 1, 0]
    assert mask[0].tolist() == [False, False, False, True, True, False]
    assert mask[1].tolist() == [False, False, True, True, True, True]
    assert mask[2].tolist() == [False, True, False, False, False, False]
    with pytest.raises(ValueError, match="pair 1: prompt_ids and response_ids must both be non-empty"):
        collate([([1], [2]), ([1], [])], pad_id=0)


def test_sft_loss_matches_a_float64_reference_on_unpadded_sequences(tiny):
    model, _ = tiny
    ids, attn, mask = collate(PAIRS, pad_id=0)
    with torch.no_grad():
        loss, n = sft_loss(model, ids, attn, mask)
        total, count = 0.0, 0
        for prompt, response in PAIRS:  # each sequence alone, no padding, no mask tensor
            seq = torch.tensor([prompt + response])
            logp = torch.log_softmax(model(input_ids=seq).logits[0].double(), dim=-1)
            for j in range(len(prompt), len(prompt) + len(response)):
                total -= float(logp[j - 1, seq[0, j]])
                count += 1
    assert n == count == 2 + 4 + 1
    assert float(loss) == pytest.approx(total / count, rel=1e-5)


def test_prompt_tokens_do_not_change_the_loss_targets(tiny):
    """Changing a response token changes the loss; the prompt only acts as context."""
    model, _ = tiny
    with torch.no_grad():
        base, _ = sft_loss(model, *collate([([5, 6, 7], [8, 9])], pad_id=0))
        other_resp, _ = sft_loss(model, *collate([([5, 6, 7], [8, 10])], pad_id=0))
        # the prompt's own next-token terms are excluded: a loss over only the last response token
        # equals the full-sequence NLL of that token
        ids, attn, mask = collate([([5, 6, 7, 8], [9])], pad_id=0)
        last, n = sft_loss(model, ids, attn, mask)
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    assert n == 1 and float(last) == pytest.approx(-float(logp[3, 9]), rel=1e-5)
    assert float(base) != pytest.approx(float(other_resp))
