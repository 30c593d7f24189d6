"""training.model.memo: size-only tensors built once in eager mode, constants under export."""
from __future__ import annotations

import pytest
import torch

from training.model import ModelConfig, build_model, memo
from training.model.attention import generate_shift_window_attn_mask, window_token_index
from training.model.position import sine_position_embedding


@pytest.fixture(autouse=True)
def _empty_memo():
    memo.clear()
    yield
    memo.clear()


def test_eager_calls_share_one_tensor_with_the_values_of_a_fresh_build():
    first = window_token_index(9, 20, 4, 4, 2, 2, "cpu")
    again = window_token_index(9, 20, 4, 4, 2, 2, "cpu")
    assert again[0] is first[0] and again[1] is first[1]
    fresh = window_token_index.__wrapped__(9, 20, 4, 4, 2, 2, "cpu")
    torch.testing.assert_close(first, fresh, rtol=0, atol=0)
    other = window_token_index(9, 20, 4, 4, 0, 0, "cpu")  # other arguments: another entry
    assert not torch.equal(other[0], first[0])
    assert memo.memo_bytes() == sum(t.numel() * 8 for t in (*first, *other))


def test_keyword_and_positional_calls_are_both_served():
    mask = generate_shift_window_attn_mask(8, 8, 4, 4, 2, 2, device="cpu")
    assert generate_shift_window_attn_mask(8, 8, 4, 4, 2, 2, device="cpu") is mask
    emb = sine_position_embedding(8, 4, 6, "cpu", torch.float32)
    assert sine_position_embedding(8, 4, 6, "cpu", torch.float32) is emb
    assert emb.shape == (1, 8, 4, 6)


def test_byte_budget_evicts_least_recently_used(monkeypatch):
    monkeypatch.setattr(memo, "MAX_BYTES", 3 * 16 * 16 * 4)  # three 16x16 float32 tensors
    a = sine_position_embedding(4, 8, 8, "cpu", torch.float32)  # 4*8*8*4 = 1024 bytes each
    sine_position_embedding(4, 8, 8, "cpu", torch.float64)  # 2048 bytes
    assert sine_position_embedding(4, 8, 8, "cpu", torch.float32) is a  # a is now most recent
    sine_position_embedding(4, 4, 4, "cpu", torch.float32)  # 256 bytes: over budget, evict
    assert memo.memo_bytes() <= memo.MAX_BYTES
    assert sine_position_embedding(4, 8, 8, "cpu", torch.float32) is a  # the float64 one went
    huge = sine_position_embedding(4, 64, 64, "cpu", torch.float32)  # larger than the budget
    assert sine_position_embedding(4, 64, 64, "cpu", torch.float32) is not huge


def test_memo_filled_in_inference_mode_serves_training_backward():
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant="tiny"))
    thermal, rgb = torch.randn(2, 1, 64, 128), torch.randn(2, 3, 64, 128)
    with torch.inference_mode():
        model.eval()(thermal, rgb)
    assert memo.memo_bytes() > 0
    model.train()
    out = model(thermal, rgb)  # index_select saves its (memoised) index for backward
    out["depth_thermal"].mean().backward()
    assert model.encoder.layers[2].blocks[1].attn.qkv.weight.grad.abs().sum() > 0


def test_export_lifts_memoised_tensors_as_constants_and_never_stores_fakes():
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant="tiny")).eval()
    inputs = (torch.randn(1, 1, 64, 128), torch.randn(1, 3, 64, 128))
    cold = torch.export.export(model, inputs, strict=False)  # empty memo: operators traced
    assert memo.memo_bytes() == 0  # nothing built under export was kept (fake tensors)
    with torch.no_grad():
        reference = model(*inputs)
    warm = torch.export.export(model, inputs, strict=False)

    def calls(program):
        return sum(node.op == "call_function" for node in program.graph.nodes)

    assert calls(warm) < 0.75 * calls(cold)
    assert len(warm.constants) > len(cold.constants)
    for program in (cold, warm):
        out = program.module()(*inputs)
        for key in reference:
            torch.testing.assert_close(out[key], reference[key], rtol=0, atol=0)
    # The lifted constants move with the program (the torch backend's move_to_device_pass).
    from torch.export.passes import move_to_device_pass

    meta = move_to_device_pass(warm, torch.device("meta"))
    assert all(t.device.type == "meta" for t in meta.constants.values())
    assert all(t.device.type == "cpu" for t in memo._memo.values() if torch.is_tensor(t))


def test_traced_size_arguments_bypass_the_memo():
    size = torch.tensor(8)
    window_token_index(size, 8, 4, 4, 0, 0, "cpu")
    assert memo.memo_bytes() == 0


def test_shift_mask_is_kept_per_dtype():
    from training.model.attention import shift_mask_for

    full = shift_mask_for(8, 12, 2, "cpu", torch.float32)
    half = shift_mask_for(8, 12, 2, "cpu", torch.float16)
    assert full.dtype == torch.float32 and half.dtype == torch.float16
    assert shift_mask_for(8, 12, 2, "cpu", torch.float16) is half  # no conversion per forward
    torch.testing.assert_close(half.float(), full)


def test_dynamic_shapes_bypass_the_memo():
    from torch.export import Dim

    model = build_model(ModelConfig(variant="tiny")).eval()
    inputs = (torch.randn(1, 1, 64, 128), torch.randn(1, 3, 64, 128))
    with torch.no_grad():
        model(*inputs)
    width = Dim("w", min=64, max=512)
    with pytest.raises(Exception) as err:  # torch's own guard message, not a memo TypeError
        torch.export.export(model, inputs, strict=False,
                            dynamic_shapes={"thermal": {3: width}, "rgb": {3: width}})
    assert "Constraints violated" in str(err.value)
