#!/usr/bin/env bash
# A TRL user's first day, end to end on the offline SmolLM2-135M (CPU): own data -> check ->
# train -> resume -> eval -> report. Writes every command and its output to transcript.md and the
# report next to it. Run from the repository root: docs/examples/trl_user/run.sh
set -uo pipefail
HERE=docs/examples/trl_user
DATA=tests/fixtures/data/trl_user/chat_completion.jsonl
RUN=${RUN:-/tmp/selfdistill-trl-user}
rm -rf "$RUN"
OUT=$HERE/transcript.md
SD=".venv/bin/selfdistill"
cat > "$OUT" <<'INTRO'
# A TRL user's first day: own data -> check -> train -> resume -> eval -> report

Real commands and outputs, written by `docs/examples/trl_user/run.sh` (offline SmolLM2-135M-Instruct
on this project's 2-vCPU machine; progress bars removed, the run folder shown as RUN). The data is
a 6-row TRL-style file (`prompt` and `completion` as chat lists, the gold answer under `gold`):
`tests/fixtures/data/trl_user/chat_completion.jsonl`. The evaluation reuses the same 6 problems, so
it shows the commands and what they print, not a held-out result. The report is in
[report/report.md](report/report.md).

INTRO
step() {  # step TITLE CMD...: run CMD, append it and its output (stdout and stderr) to the transcript
    local title=$1; shift
    { echo "## $title"; echo; echo '```'; echo "\$ selfdistill ${*:2}"; } >> "$OUT"
    "$@" > "$RUN.log" 2>&1; local code=$?
    grep -v -E '^\s*[0-9]+%\||it/s\]|s/it\]|sample/s\]' "$RUN.log" | sed "s#$RUN#RUN#g" >> "$OUT"
    { echo "(exit $code)"; echo '```'; echo; } >> "$OUT"
}
COMMON=(model=smollm2-135m "data=$DATA" max_new_tokens=48 prompts_per_step=2 lora.r=8 lora.alpha=16
        lr=2e-4 rewards.answer_format=boxed_or_last_number logging.progress=false checkpoint.every=1
        "output_dir=$RUN")
step "1. Check the file" $SD data check "$DATA" --method purified-opsd
step "2. Check it with the answer column mapped" $SD data check "$DATA" --method purified-opsd --columns answer=gold
step "3. Train 2 steps with the same mapping" $SD train purified-opsd "${COMMON[@]}" data.columns=answer=gold max_steps=2
step "4. Resume with a changed setting (refused)" $SD train purified-opsd "${COMMON[@]}" data.columns=answer=gold max_steps=3 resume=true lr=1e-4
step "5. Resume to step 3 as it was" $SD train purified-opsd "${COMMON[@]}" data.columns=answer=gold max_steps=3 resume=true
step "6. Evaluate the run, reading unboxed answers" $SD eval --model "$RUN" --benchmarks "$DATA" --columns answer=gold --k 2 --pass-k 1,2 --max-new-tokens 48 --answer-format boxed_or_last_number --output-dir "$RUN/eval" --no-progress
step "7. Report" $SD report "$RUN" --output-dir "$HERE/report"
sed -i "s#$RUN#RUN#g" "$HERE"/report/report.md "$OUT"
rm -f "$RUN.log"
