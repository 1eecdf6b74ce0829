#!/usr/bin/env bash
# Issue 9 on a GPU machine: the service in front of real vLLM (0.26, CUDA), measured.
# Runs ON the GPU machine from the repository root; one or more phases per device call:
#
#   run_gpu.sh stage1        env, stage chunk .gpu/c01, build models, install the gateway's extra wheels
#   run_gpu.sh stage2        stage chunk .gpu/c02, unpack + import-test vllm          (same warm machine)
#   run_gpu.sh bert-ab       service (bert-ce, 1 engine): start progress, dialect smoke test, interleaved
#                            A/B vLLM /rerank vs vLLM /score vs service /v1/rerank, N 16/100/1000 x conc 1/8/32
#   run_gpu.sh replicas      service with --engine-replicas 6 (then 8): pairs/s vs one engine, CPU per process
#                            group, py-spy profiles of a gateway worker / engine API server / EngineCore
#   run_gpu.sh qwen          service (qwen3-rr, preset overrides + template, sized GPU memory): A/B + MFU
#   run_gpu.sh qwen-replicas service with qwen3-rr over --engine-replicas 4 (QWEN_REPLICA_SPECS) vs one engine
#   run_gpu.sh defaults-bert / defaults-qwen / defaults-qwen-tokens (DEF_TOKENS) / defaults-{qwen,bert}-nomps (--mps off)
#                            issue 20: --model only (auto replicas/workers/KV budget/MPS): what
#                            /health resolved, first request vs next ten, one engine vs service at conc 64/128
#   run_gpu.sh two-models    --model bert=bert-ce --model qwen=qwen3-rr: /health per model, both loaded at once
#   run_gpu.sh qwen4b        a Qwen3-4B-shape checkpoint (built on the GPU) with the origin guide's recipe: service vs direct
#   run_gpu.sh gateway-cost  the gateway alone against the stub engine (bench/bench.py), on the GPU host's quiet cores
#   run_gpu.sh levers        bert-ce replicas with --api-server-count 2 (pass-through) / more gateway workers
#
# Staging here first: bash bench/gpu/stage_extra.sh. Then, back to back on one warm machine
# (it is handed back 30 s after a call), carrying .gpu/tools and .gpu/extra every time:
#   1. carry .gpu/c01:  bash bench/gpu/run_gpu.sh stage1
#   2. carry .gpu/c02:  bash bench/gpu/run_gpu.sh stage2 bert-ab
#   3.                  REPLICA_SPECS=8:8 REPLICA_CONC=64,128 bash bench/gpu/run_gpu.sh replicas levers
#   4.                  bash bench/gpu/run_gpu.sh qwen
# (the calls actually made are listed in docs/gpu-performance.md). Env knobs: DEADLINE_S,
# REPLICA_SPECS="engines:workers ...", REPLICA_CONC, LEVER_SPECS="engines:workers:api_servers ...",
# QWEN_GPU_UTIL, QWEN_RESERVE_S (seconds kept for the phases after qwen).
# Everything lands in $OUT: log_<phases>.txt (all output) and work_<phases>.tgz (service logs, JSON,
# py-spy raw stacks, nvidia-smi samples). DEADLINE_S (default 560) keeps a call inside its 600 s.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
OUTDIR="${OUT:-/root/out}"; mkdir -p "$OUTDIR"
SITE=/root/site EXTRA=/root/extra MODELS=/root/models TOOLS=/root/tools
WORK=/root/work; mkdir -p "$WORK"
TAGS="$(echo "$*" | tr ' ' '_')"
exec > >(tee -a "$OUTDIR/log_${TAGS}.txt") 2>&1
export PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1 VLLM_DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export NCCL_NVLS_ENABLE=0 VLLM_USE_FLASHINFER_SAMPLER=0
export PYTHONPATH="$SITE:$EXTRA"
# benchmark the gateway, not its admission control or score cache (defaults changed while this was measured)
export RERANK_MAX_INFLIGHT_PAIRS=${RERANK_MAX_INFLIGHT_PAIRS:-1000000} RERANK_SCORE_CACHE_SIZE=${RERANK_SCORE_CACHE_SIZE:-0}
T0=$(date +%s); DEADLINE=${DEADLINE_S:-560}
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
stamp() { echo "=== [$(( $(date +%s) - T0 )) s] $*"; }
BENCH="python3 bench/gpu/bench_gpu.py"
SVC="python3 bench/gpu/svc.py"
SVC_PID=""; SMI_PID=""

smi_start() { nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 1 > "$WORK/smi_$1.csv" 2>/dev/null & SMI_PID=$!; }
smi_stop() { [ -n "$SMI_PID" ] && kill $SMI_PID 2>/dev/null; SMI_PID=""; $SVC smi "$WORK/smi_$1.csv"; }

# svc_start TAG [start_service args...]: start the service (own session), wait for every engine
svc_start() {
  local tag=$1; shift
  # --engine-port: the A/B variants call the engines directly, which Unix sockets (the default) would not allow.
  stamp "service start ($tag): python3 start_service.py --device cuda --port 8000 --engine-port 8100 --ready-timeout 300 $*"
  free_port8000
  nvidia-smi --query-gpu=memory.used --format=csv,noheader | sed 's/^/GPU memory before start: /'
  setsid python3 start_service.py --device cuda --port 8000 --engine-port 8100 --ready-timeout 300 "$@" > "$WORK/service_$tag.log" 2>&1 &
  SVC_PID=$!
  local budget=$(( $(left) - 30 )); [ $budget -gt 330 ] && budget=330
  if ! $SVC wait --pid $SVC_PID --all --timeout $budget --out "$WORK/health_$tag.json"; then
    grep -E "engine_|ERROR|Error|error" "$WORK/service_$tag.log" | grep -v DeprecationWarning | tail -30 | cut -c1-400
    tail -40 "$WORK/service_$tag.log" | cut -c1-300
    svc_stop "$tag"; return 1
  fi
  # start progress as the service logged it (engine lines are forwarded with a [engineN] prefix)
  grep -E "service_config|engine_starting|engine_ready|engine_state|Started server|Uvicorn running|torch.compile took|Model loading took|Available KV cache|init engine|Application startup" \
      "$WORK/service_$tag.log" | cut -c1-330 | head -40
  nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader | sed 's/^/GPU memory with service up (used, total): /'
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | head -12
}
# a service left by an earlier call (setsid survives a timed-out call): stop it by its pid
free_port8000() {
  local p pids
  pids=$(python3 -c "
import os
me = os.getppid()
for d in os.listdir('/proc'):
    if d.isdigit() and int(d) != me:
        try: c = open(f'/proc/{d}/cmdline','rb').read().split(b'\\0')
        except OSError: continue
        if any(x.endswith(b'start_service.py') for x in c): print(d)")
  for p in $pids; do echo "left-over service pid $p: SIGTERM"; kill -TERM $p 2>/dev/null; done
  for p in $pids; do for _ in $(seq 1 40); do kill -0 $p 2>/dev/null || break; sleep 0.5; done; kill -KILL -- -$p 2>/dev/null; kill -KILL $p 2>/dev/null; done
  return 0
}
engine_url() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['engines'][int(sys.argv[2])]['url'])" "$WORK/health_$1.json" "${2:-0}"; }
engine_pids() { python3 -c "import json,sys; print(' '.join(str(e['pid']) for e in json.load(open(sys.argv[1]))['engines'] if e.get('pid')))" "$WORK/health_$1.json" 2>/dev/null; }
svc_stop() {
  local tag=$1 pids; pids=$(engine_pids "$tag")
  [ -z "$SVC_PID" ] && return 0
  stamp "service stop ($tag)"
  kill -TERM $SVC_PID 2>/dev/null
  for _ in $(seq 1 60); do kill -0 $SVC_PID 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- -$SVC_PID 2>/dev/null
  for p in $pids; do kill -0 $p 2>/dev/null && { echo "engine pid $p still alive: killing its group"; kill -KILL -- -$p 2>/dev/null; }; done
  SVC_PID=""; sleep 3
  grep -cE "Traceback" "$WORK/service_$tag.log" | sed 's/^/tracebacks in service log: /'
  nvidia-smi --query-gpu=memory.used --format=csv,noheader | sed 's/^/GPU memory after stop: /'
}
mfu_window() {  # mfu_window TAG MODEL_NAME WORDS CONFIG: 10 s of service load between two token-counter snapshots
  $SVC tokens --health "$WORK/health_$1.json" --out "$WORK/tok0_$1.json" >/dev/null || return 0
  $BENCH --label "$1: service only, for the computed-token MFU" --variant "service=rerank@http://127.0.0.1:8000/v1/rerank" \
      --model $2 --words $3 --sizes 100 --conc 64 --doc-words 100 --rounds 1 --duration-s 10 \
      --max-pairs-in-flight 16000 --budget-s 25 | grep -E "pairs/s" | tail -2
  $SVC tokens --health "$WORK/health_$1.json" --out "$WORK/tok1_$1.json" >/dev/null
  $SVC computed --before "$WORK/tok0_$1.json" --after "$WORK/tok1_$1.json" --config $4
}
finish() {
  [ -n "$SVC_PID" ] && svc_stop last
  [ -n "$SMI_PID" ] && kill $SMI_PID 2>/dev/null
  tar czf "$OUTDIR/work_${TAGS}.tgz" -C "$WORK" . 2>/dev/null; rm -rf "$WORK"/*
  stamp "done"
}
trap finish EXIT

echo "tree: $(git rev-parse --short HEAD 2>/dev/null) + $(git status --short 2>/dev/null | grep -vc '^??') modified files; phases: $*"
for phase in "$@"; do
case "$phase" in
stage1)
  stamp stage1
  bash .gpu/tools/gpu.sh env
  rm -rf "$TOOLS"; cp -r .gpu/tools "$TOOLS"
  bash "$TOOLS/gpu.sh" stage .gpu/c01
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$EXTRA" .gpu/extra/*.whl 2>&1 | tail -2
  ls "$EXTRA"; "$EXTRA/bin/py-spy" --version || echo "no py-spy"
  bash "$TOOLS/gpu.sh" models
  python3 -c "import orjson, stamina, aiohttp, httpx, pydantic_settings, fastapi_offline, tqdm; print('gateway extras import OK')"
  ;;
stage2)
  stamp stage2
  bash "$TOOLS/gpu.sh" stage .gpu/c02 && bash "$TOOLS/gpu.sh" install || exit 3
  python3 -c "import fastapi, uvicorn, pydantic, orjson, stamina, vllm; print('service imports OK', vllm.__version__)"
  ;;
bert-ab)
  stamp "bert-ab: service with bert-ce, one engine"
  svc_start bert1 --model $MODELS/bert-ce --engine-replicas 1 --workers 2 --gpu-memory-utilization 0.2 || continue
  $SVC smoke --model bert-ce
  E=$(engine_url bert1)
  $SVC window --engine "$E" --model bert-ce --words $MODELS/bert-ce/words.txt
  smi_start bert-ab
  $BENCH --label "bert-ce, 1 engine: vLLM /rerank vs vLLM /score vs service /v1/rerank (same engine)" \
      --variant "vllm_rerank=rerank@$E/rerank" --variant "vllm_score=score@$E/score" \
      --variant "service=rerank@http://127.0.0.1:8000/v1/rerank" --model bert-ce --words $MODELS/bert-ce/words.txt \
      --sizes 16,100,1000 --conc 1,8,32 --doc-words 100 --rounds ${AB_ROUNDS:-4} --pairs-per-round ${AB_PAIRS:-1000} \
      --proc-cpu --budget-s $(( $(left) - ${BERT_RESERVE_S:-150} )) --json "$OUTDIR/bench_bert_ab.json" | grep -v '^{'
  smi_stop bert-ab
  if [ $(left) -gt 100 ]; then
    # lever: pre-tokenised pairs to /classify. BERT's token type ids cannot be sent that way, so this
    # measures what the engine's tokenizer costs (scores differ: the check line shows by how much)
    $BENCH --label "bert-ce lever: pre-tokenised [CLS] q [SEP] d [SEP] ids to /classify vs text to /score" \
        --variant "vllm_score=score@$E/score" --variant "ids=ids@$E/classify" --tokenizer $MODELS/bert-ce \
        --ids-prompt pair --model bert-ce --words $MODELS/bert-ce/words.txt --sizes 100 --conc 8,32 --doc-words 100 \
        --rounds 2 --pairs-per-round 2000 --proc-cpu --budget-s $(( $(left) - 40 )) \
        --json "$OUTDIR/bench_bert_pretok.json" | grep -v '^{'
  fi
  svc_stop bert1
  ;;
replicas)
  for spec in ${REPLICA_SPECS:-6:4 8:6}; do
    n=${spec%%:*}; w=${spec##*:}
    [ $(left) -lt 200 ] && { stamp "skip replicas $spec: time"; continue; }
    stamp "replicas: $n engines of bert-ce on one GPU, $w gateway workers"
    svc_start rep$n --model $MODELS/bert-ce --engine-replicas $n --workers $w --gpu-memory-utilization 0.9 || continue
    E=$(engine_url rep$n 0)
    smi_start rep$n
    $BENCH --label "bert-ce, $n engines, $w gateway workers: one engine direct vs service over all" \
        --variant "one_vllm=rerank@$E/rerank" --variant "service=rerank@http://127.0.0.1:8000/v1/rerank" \
        --model bert-ce --words $MODELS/bert-ce/words.txt --sizes 100 --conc ${REPLICA_CONC:-32,96} --doc-words 100 \
        --rounds 2 --duration-s 12 --proc-cpu --budget-s 200 --json "$WORK/bench_rep$n.json" | grep -v '^{'
    cp "$WORK/bench_rep$n.json" "$OUTDIR/" 2>/dev/null
    smi_stop rep$n
    if [ -x "$EXTRA/bin/py-spy" ] && [ $(left) -gt 100 ]; then
      stamp "py-spy: 10 s under service load (N=100, conc 96)"
      $BENCH --label profile-load --variant "service=rerank@http://127.0.0.1:8000/v1/rerank" --model bert-ce \
          --words $MODELS/bert-ce/words.txt --sizes 100 --conc 96 --rounds 1 --duration-s 16 --budget-s 30 > "$WORK/profile_load.txt" 2>&1 &
      BP=$!; SPIES=""; sleep 4
      GW=$(pgrep -P $SVC_PID -f spawn_main | head -1)
      API=$(engine_pids rep$n | cut -d' ' -f1)
      CORE=$(pgrep -P $API -f EngineCore | head -1)
      for tgt in "gateway_worker:$GW" "engine_api:$API" "engine_core:$CORE"; do
        nm=${tgt%%:*}; pid=${tgt##*:}
        [ -n "$pid" ] && "$EXTRA/bin/py-spy" record --nonblocking -r 100 -d 10 --format raw -o "$WORK/pyspy_${nm}_rep$n.txt" --pid $pid > "$WORK/pyspy_${nm}.log" 2>&1 &
        SPIES="$SPIES $!"
      done
      wait $BP; for sp in $SPIES; do wait $sp; done
      grep -E "pairs/s|service" "$WORK/profile_load.txt" | tail -3
      for f in "$WORK"/pyspy_*_rep$n.txt; do [ -s "$f" ] && $SVC pyspy "$f" --top 22; done
      cat "$WORK"/pyspy_*.log | grep -iv "^$" | head -10
    fi
    svc_stop rep$n
  done
  ;;
qwen)
  stamp "qwen: service with qwen3-rr (llm-reranker: preset overrides + template), GPU memory sized"
  svc_start qwen --model $MODELS/qwen3-rr --workers 2 --gpu-memory-utilization ${QWEN_GPU_UTIL:-0.15} || continue
  grep -E "Available KV cache|GPU KV cache size|Maximum concurrency|max_model_len|non-default" "$WORK/service_qwen.log" | cut -c1-300 | head -8
  $SVC smoke --model qwen3-rr
  E=$(engine_url qwen)
  smi_start qwen
  $BENCH --label "qwen3-rr (Qwen3-Reranker-0.6B shape), 1 engine: vLLM /rerank vs vLLM /score vs service" \
      --variant "vllm_rerank=rerank@$E/rerank" --variant "vllm_score=score@$E/score" \
      --variant "service=rerank@http://127.0.0.1:8000/v1/rerank" --variant "vllm_ids=ids@$E/classify" \
      --tokenizer $MODELS/qwen3-rr --ids-prompt qwen3 --model qwen3-rr --words $MODELS/qwen3-rr/words.txt \
      --sizes 16,100,1000 --conc 1,8,32 --doc-words 100 --rounds 2 --pairs-per-round 1500 --max-pairs-in-flight 16000 \
      --proc-cpu --budget-s $(( $(left) - ${QWEN_RESERVE_S:-200} )) --json "$OUTDIR/bench_qwen.json" | grep -v '^{'
  smi_stop qwen
  python3 - "$OUTDIR/bench_qwen.json" $MODELS/qwen3-rr/config.json <<'EOF'
import json, subprocess, sys
rows = [r for r in json.load(open(sys.argv[1])) if r.get("tokens_per_s")]
for v in sorted({r["variant"] for r in rows}):
    best = max((r for r in rows if r["variant"] == v), key=lambda r: r["tokens_per_s"])
    print(f"{v}: best tokens/s {best['tokens_per_s']} at N={best['N']} conc={best['conc']} ({best['pairs_per_s']} pairs/s)")
    subprocess.run([sys.executable, "bench/gpu/svc.py", "mfu", "--config", sys.argv[2], "--tokens-per-s", str(best["tokens_per_s"])])
EOF
  svc_stop qwen
  ;;
qwen-replicas)
  # the LLM reranker over several engines on one GPU (each with its share of the memory)
  for spec in ${QWEN_REPLICA_SPECS:-4:4}; do
    n=${spec%%:*}; w=${spec##*:}
    [ $(left) -lt 240 ] && { stamp "skip qwen replicas $spec: time"; continue; }
    stamp "qwen-replicas: $n engines of qwen3-rr on one GPU, $w gateway workers"
    svc_start qrep$n --model $MODELS/qwen3-rr --engine-replicas $n --workers $w \
        --gpu-memory-utilization ${QWEN_REPLICA_UTIL:-0.6} || continue
    E=$(engine_url qrep$n 0)
    smi_start qrep$n
    $BENCH --label "qwen3-rr, $n engines, $w gateway workers: one engine direct (/score) vs service over all" \
        --variant "one_vllm=score@$E/score" --variant "service=rerank@http://127.0.0.1:8000/v1/rerank" \
        --model qwen3-rr --words $MODELS/qwen3-rr/words.txt --sizes 100 --conc ${QWEN_REPLICA_CONC:-32,64} \
        --doc-words 100 --rounds 2 --duration-s 12 --proc-cpu --budget-s 150 --json "$OUTDIR/bench_qrep$n.json" | grep -v '^{'
    smi_stop qrep$n
    svc_stop qrep$n
  done
  ;;
levers)
  # what could pass the host-core ceiling: more API servers per engine, more gateway workers
  # LEVER_SPECS="engines:workers:api_servers[:max_num_batched_tokens]", LEVER_MODEL=bert-ce (default) or qwen3-rr
  for spec in ${LEVER_SPECS:-6:6:2}; do
    IFS=: read -r n w a t <<< "$spec"; tag=lev$n-$w-$a${t:+-$t}
    [ $(left) -lt 170 ] && { stamp "skip lever $spec: time"; continue; }
    stamp "lever: $n engines, $w workers, --api-server-count $a, --max-num-batched-tokens ${t:-default}"
    lm=${LEVER_MODEL:-bert-ce}; fmt=(); [ $lm = qwen3-rr ] && fmt=(--model-format qwen3-reranker)
    svc_start $tag --model $MODELS/$lm "${fmt[@]}" --engine-replicas $n --workers $w --gpu-memory-utilization 0.9 \
        ${t:+--max-num-batched-tokens $t} -- --api-server-count $a || continue
    grep -oE "max_num_batched_tokens[=:' ]+[0-9]+" "$WORK/service_$tag.log" | sort | uniq -c | head -3
    smi_start lev
    $BENCH --label "lever: $lm $n engines x --api-server-count $a, $w gateway workers, batched tokens ${t:-default}" \
        --variant "service=rerank@http://127.0.0.1:8000/v1/rerank" --model $lm --words $MODELS/$lm/words.txt \
        --sizes 100 --conc 96 --doc-words 100 --rounds 2 --duration-s 12 --proc-cpu --budget-s 60 \
        --json "$OUTDIR/bench_$tag.json" | grep -v '^{'
    smi_stop lev
    svc_stop $tag
  done
  ;;
defaults-bert|defaults-qwen|defaults-qwen-tokens|defaults-qwen-nomps|defaults-bert-nomps)
  # issue 20: the defaults (auto replicas, auto workers, KV budgets) with no sizing flags at all;
  # defaults-qwen-tokens: the same plus --max-num-batched-tokens T, for each T in DEF_TOKENS (default 32768)
  m=qwen3-rr; [[ $phase == defaults-bert* ]] && m=bert-ce
  runs=$phase; [ $phase = defaults-qwen-tokens ] && runs=$(for t in ${DEF_TOKENS:-32768}; do echo -n "defaults-qwen-t$t "; done)
  for tag in $runs; do
  tok=(); [[ $tag == defaults-qwen-t* ]] && tok=(--max-num-batched-tokens ${tag#defaults-qwen-t})
  [[ $tag == *-nomps ]] && tok=(--mps off)
  [ -f "$OUTDIR/bench_$tag.json" ] && { stamp "skip $tag: measured in this call"; continue; }
  [ $(left) -lt 150 ] && { stamp "skip $tag: time"; continue; }
  stamp "$tag: service with --model $MODELS/$m and the defaults ${tok[*]}"
  TS=$(date +%s)
  fmt=(); [ $m = qwen3-rr ] && fmt=(--model-format qwen3-reranker)  # a random checkpoint has no reranker name to detect
  phase=$tag
  svc_start $phase --model $MODELS/$m "${fmt[@]}" "${tok[@]}" || continue
  echo "start to all engines ready: $(( $(date +%s) - TS )) s"
  python3 - "$WORK/health_$phase.json" <<'EOF2'
import json, sys
h = json.load(open(sys.argv[1]))
print("defaults resolved:", json.dumps({k: v for k, v in h.items() if k != "engines"})[:900])
print("engines:", len(h.get("engines") or []), [(e.get("name"), e.get("state"), e.get("gpu_memory_utilization")) for e in h.get("engines") or []])
EOF2
  grep -oE "kv.cache.memory.bytes[= ,'\"]*[0-9]+|Available KV cache memory: [0-9.]+ GiB|GPU KV cache size: [0-9,]+ tokens|No available memory[^\"]*" "$WORK/service_$phase.log" | sort | uniq -c | head -12
  grep -oE "max_num_batched_tokens[=:' ]+[0-9]+|chunked_prefill[a-z_]*[=:' ]+[A-Za-z]+" "$WORK/service_$phase.log" | sort | uniq -c | head -4
  grep -E "mps_started|mps_skipped|mps_unavailable" "$WORK/service_$phase.log" | cut -c1-300 | head -3
  $SVC first --model $m --words $MODELS/$m/words.txt --n 100 --doc-words 100
  E=$(engine_url $phase 0); kind=rerank; [ $m = qwen3-rr ] && kind=score
  smi_start $phase
  $BENCH --label "$phase: one engine direct ($kind) vs service over all (defaults)" \
      --variant "one_vllm=$kind@$E/$kind" --variant "service=rerank@http://127.0.0.1:8000/v1/rerank" \
      --model $m --words $MODELS/$m/words.txt --sizes 100 --conc 64,128 --doc-words 100 \
      --rounds 1 --duration-s ${DEF_DUR_S:-8} --max-pairs-in-flight 16000 --proc-cpu --budget-s 70 \
      --json "$OUTDIR/bench_$phase.json" | grep -v '^{'
  smi_stop $phase
  [ $m = qwen3-rr ] && [ $(left) -gt 60 ] && mfu_window $phase $m $MODELS/$m/words.txt $MODELS/$m/config.json
  svc_stop $phase
  done
  ;;
two-models)
  [ $(left) -lt 170 ] && { stamp "skip two-models: time"; continue; }
  stamp "two-models: --model bert=bert-ce --model qwen=qwen3-rr, defaults otherwise"
  TS=$(date +%s)
  printf '[[models]]\nname = "bert"\nmodel = "%s"\n\n[[models]]\nname = "qwen"\nmodel = "%s"\nformat = "qwen3-reranker"\n' \
      $MODELS/bert-ce $MODELS/qwen3-rr > "$WORK/two.toml"
  svc_start two --models-file "$WORK/two.toml" || continue
  echo "start to all engines ready: $(( $(date +%s) - TS )) s"
  python3 -c "import json,sys; h=json.load(open(sys.argv[1])); print(json.dumps({k: v for k, v in h.items() if k != 'engines'})[:1500]); print([(e.get('name'), e.get('model'), e.get('state'), e.get('gpu_memory_utilization')) for e in h.get('engines') or []])" "$WORK/health_two.json"
  grep -oE "kv.cache.memory.bytes[= ,'\"]*[0-9]+" "$WORK/service_two.log" | sort | uniq -c | head
  curl -s http://127.0.0.1:8000/v1/models | cut -c1-400; echo
  $SVC first --model bert --words $MODELS/bert-ce/words.txt
  $SVC first --model qwen --words $MODELS/qwen3-rr/words.txt
  smi_start two
  BPIDS=""
  for mm in bert:bert-ce qwen:qwen3-rr; do
    $BENCH --label "two-models, both loaded at once: $mm" --variant "service_${mm%%:*}=rerank@http://127.0.0.1:8000/v1/rerank" \
        --model ${mm%%:*} --words $MODELS/${mm##*:}/words.txt --sizes 100 --conc 64 --doc-words 100 --rounds 1 \
        --duration-s 12 --max-pairs-in-flight 16000 --budget-s 40 --json "$OUTDIR/bench_two_${mm%%:*}.json" > "$WORK/two_${mm%%:*}.txt" 2>&1 &
    BPIDS="$BPIDS $!"
  done
  wait $BPIDS  # not a bare `wait`: that also waits for the nvidia-smi sampler, which never ends
  grep -v '^{' "$WORK"/two_*.txt
  smi_stop two
  svc_stop two
  ;;
qwen4b)
  # issue 20: the Qwen3-Reranker-4B shape with the origin guide's production recipe, service vs direct
  [ $(left) -lt 240 ] && { stamp "skip qwen4b: time"; continue; }
  if [ ! -f $MODELS/qwen3-4b/config.json ]; then
    stamp "qwen4b: building a random Qwen3-4B-shape checkpoint (qwen3-rr's tokenizer) on the GPU"
    python3 - $MODELS/qwen3-rr $MODELS/qwen3-4b <<'EOF4'
import os, shutil, sys, torch
from transformers import AutoConfig, Qwen3ForCausalLM
src, dst = sys.argv[1], sys.argv[2]
cfg = AutoConfig.from_pretrained(src)
cfg.update(dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, tie_word_embeddings=True))
if getattr(cfg, "layer_types", None) is not None:  # one entry per layer (transformers 5)
    cfg.layer_types = [cfg.layer_types[0]] * cfg.num_hidden_layers
torch.set_default_dtype(torch.bfloat16)
with torch.device("cuda"):
    model = Qwen3ForCausalLM(cfg)
print(f"params: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B")
model.save_pretrained(dst)
for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "words.txt"):
    if os.path.exists(f"{src}/{f}"):  # build_models.py writes no special_tokens_map.json
        shutil.copy(f"{src}/{f}", f"{dst}/{f}")
EOF4
    du -sh $MODELS/qwen3-4b
  fi
  svc_start q4b --model $MODELS/qwen3-4b --model-format qwen3-reranker --workers 2 --max-num-seqs 1024 --max-num-batched-tokens 32768 \
      --gpu-memory-utilization 0.9 --max-workers 8 || continue
  E=$(engine_url q4b 0)
  smi_start q4b
  $BENCH --label "qwen3-4b shape, origin guide recipe: vLLM /score direct vs service (same engine)" \
      --variant "vllm_score=score@$E/score" --variant "service=rerank@http://127.0.0.1:8000/v1/rerank" \
      --model qwen3-4b --words $MODELS/qwen3-rr/words.txt --sizes 100 --conc 16,64 --doc-words 100 \
      --rounds 2 --duration-s 12 --max-pairs-in-flight 16000 --proc-cpu --budget-s $(( $(left) - 40 )) \
      --json "$OUTDIR/bench_q4b.json" | grep -v '^{'
  smi_stop q4b
  [ $(left) -gt 50 ] && mfu_window q4b qwen3-4b $MODELS/qwen3-rr/words.txt $MODELS/qwen3-4b/config.json
  svc_stop q4b
  ;;
gateway-cost)
  # issue 20 item 3 on a quiet 16-core host: the gateway alone against the project's instant stub engine
  [ $(left) -lt 90 ] && { stamp "skip gateway-cost: time"; continue; }
  stamp "gateway-cost: bench/bench.py --engine stub (1 gateway worker, conc 1)"
  HF_HUB_OFFLINE=1 timeout $(( $(left) - 20 )) python3 bench/bench.py --engine stub --variants direct,gateway \
      --docs 1,100,1000 --concurrency 1 --reps 3 --duration 3 --no-plots --out "$WORK/cost" 2>&1 | grep -vE "^\[[0-9]+/" | tail -16
  cp "$WORK"/cost/*.json "$OUTDIR/" 2>/dev/null
  ;;
*) echo "unknown phase $phase"; exit 2 ;;
esac
done
