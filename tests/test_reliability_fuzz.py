"""Fuzzing the input parsers that face users: they either work or raise their own error type.

- data: validate_rows on arbitrary JSON rows, load_examples on arbitrary .jsonl/.json/.csv
  bytes, the --columns flag parser;
- train config: `key=value` overrides and whole recipes (arbitrary keys, YAML-ish values) give a
  TrainConfig or a ConfigError, nothing else.
(The renderer and answer extraction are fuzzed in tests/test_contexts_*.py and
tests/test_rewards_extract.py.)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability.guards import forbid_model_loading, run_cli

from selfdistill.data import DataError, RowError, load_examples, validate_rows
from selfdistill.data.columns import ALIASES, parse_columns_flag
from selfdistill.train.config import ConfigError, TrainConfig, all_keys, from_dict, load_config

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
METHODS = st.sampled_from([None, "opsd", "purified-opsd", "sdpo", "grpo", "srpo"])

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)
column_names = st.one_of(st.sampled_from(sorted({c for names in ALIASES.values() for c in names}
                                                | {"messages", "prompt", "completion", "text"})),
                         st.text(max_size=10))
rows = st.lists(st.dictionaries(column_names, json_values, max_size=5), max_size=6)


@SETTINGS
@given(rows=rows, method=METHODS, mapping=st.dictionaries(st.sampled_from(["problem", "solution", "answer", "id", "bogus"]),
                                                          column_names, max_size=2))
def test_validate_rows_never_crashes(rows, method, mapping):
    errors = validate_rows(rows, method=method, columns=mapping or None)
    assert isinstance(errors, list) and all(isinstance(e, RowError) for e in errors)
    for e in errors:
        assert 0 <= e.row <= len(rows) and e.field and e.message


lines = st.one_of(json_values.map(json.dumps), st.text(max_size=40),
                  st.dictionaries(column_names, json_values, max_size=4).map(json.dumps))


@SETTINGS
@given(body=st.one_of(st.lists(lines, max_size=6).map("\n".join).map(str.encode), st.binary(max_size=200)),
       suffix=st.sampled_from([".jsonl", ".json", ".csv"]), method=METHODS)
def test_load_examples_raises_only_data_error(body, suffix, method):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(body)
        try:
            examples = load_examples(path, method=method)
        except DataError as err:
            assert err.errors and all(str(path) in e.format() or e.source for e in err.errors)
            return
        assert examples and all(e.problem.strip() for e in examples)


@SETTINGS
@given(st.text(max_size=40))
def test_columns_flag_raises_only_value_error(text):
    try:
        mapping = parse_columns_flag(text)
    except ValueError as err:
        assert "FIELD=COLUMN" in str(err)
        return
    assert all(k and v for k, v in mapping.items())


KEYS = all_keys() + [k.split(".")[-1] for k in all_keys()] + ["model", "data", "method", "contexts"]
VALUES = st.one_of(st.text(max_size=15), st.sampled_from(
    ["1", "-1", "0", "2.5", "1e-5", "1e999", ".inf", "nan", "null", "~", "true", "no", "[1, 2]",
     "{a: 1}", "{", "]", "!!python/object:os.system", "2026-11-22", "'quoted'", "a: b: c", "- x"]))
overrides = st.lists(st.one_of(st.tuples(st.sampled_from(KEYS) | st.text(max_size=12), VALUES).map("=".join),
                               st.text(max_size=20)), max_size=4)


@SETTINGS
@given(overrides=overrides)
def test_overrides_raise_only_config_error(overrides):
    try:
        cfg = load_config("smoke", overrides)
    except ConfigError as err:
        assert str(err)
        return
    assert isinstance(cfg, TrainConfig)


@SETTINGS
@given(raw=st.dictionaries(st.sampled_from(["model", "data", "schedule", "optimizer", "seed", "lora", "x"])
                           | st.text(max_size=6), json_values, max_size=4))
def test_recipe_mappings_raise_only_config_error(raw):
    try:
        from_dict(raw)
    except ConfigError as err:
        assert str(err)


# Found by the fuzzing above, one level further (the trainer builds the ContextConfig after the
# data loads and before the model): a `contexts.roles` that is not a mapping escaped as an
# AttributeError with a traceback (fixed in train/setup.py:context_config).
@pytest.mark.parametrize("roles", ["5", "[student]", "{student: 3}"])
def test_contexts_roles_not_a_mapping_is_a_config_error(roles, tmp_path, capsys, monkeypatch):
    calls = forbid_model_loading(monkeypatch)
    code, _, err = run_cli(["train", "smoke", f"contexts={{roles: {roles}}}", f"output_dir={tmp_path / 'run'}",
                            "logging.progress=false", "logging.tensorboard=false"], capsys)
    assert code == 2 and "contexts.roles must map a role to its options" in err and calls == []
