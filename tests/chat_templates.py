"""Chat templates shared by the context tests."""

# A small Qwen3-like template: the generation prompt is "<|im_start|>assistant\n", plus an empty
# think block when thinking is off; the conversation part does not depend on enable_thinking.
QWEN_LIKE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}{% endif %}"
)
EMPTY_THINK = "<think>\n\n</think>\n\n"
