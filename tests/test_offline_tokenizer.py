def test_smol_tokenizer_has_chat_template(smol_tokenizer):
    text = smol_tokenizer.apply_chat_template(
        [{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")
    assert smol_tokenizer.eos_token == "<|im_end|>"
    assert len(smol_tokenizer) == 49152
