#!/usr/bin/env bash
# `make gpu-check`: the device-marked tests and the benchmark on a CUDA device, results in $GPU_OUT/.
#
# Runs without make and without a virtual environment too, for a GPU machine that has its own Python
# with CUDA torch but no package registries (copy .gpu-wheels/ there first: `make gpu-wheels`):
#   PY=python3 bash bench/gpu_check.sh
# Environment: PY (python), GPU_OUT (bench/results/gpu), GPU_DEVICE (cuda; cpu rehearses the run on a
# machine without a GPU), GPU_MARKS (gpu), BENCH_ARGS (e.g. --quick).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${GPU_OUT:-bench/results/gpu}
DEVICE=${GPU_DEVICE:-cuda}
MARKS=${GPU_MARKS:-gpu}
mkdir -p "$OUT"
"$PY" -c "import torch, sys; sys.exit(0 if '$DEVICE' == 'cpu' or torch.cuda.is_available() else
          'gpu-check needs a CUDA device; none found')" || exit 2

# The library and the benchmarks straight from the checkout; carried wheels (the anchor curvlinops) beside.
site=build/gpu-site
if compgen -G ".gpu-wheels/*.whl" >/dev/null && ! "$PY" -c "import curvlinops" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" .gpu-wheels/*.whl \
        || echo "gpu-check: could not install .gpu-wheels/ (the anchors that need curvlinops will be missing)"
fi
export PYTHONPATH="$PWD/lib:$PWD:$PWD/$site${PYTHONPATH:+:$PYTHONPATH}"

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__,
            'cuda', torch.version.cuda, 'threads', torch.get_num_threads())"; } | tee "$OUT/machine.txt"

# The course's own tests need the course tooling (nbformat, nbgrader, JupyterLab), not a GPU.
status=0
"$PY" -m pytest -m "$MARKS" -q -p no:cacheprovider \
    --ignore=tests/browser --ignore=tests/test_autograder.py --ignore=tests/test_autograder_dask.py \
    --ignore=tests/test_deploy.py --ignore=tests/test_repo.py --ignore=tests/test_sections.py \
    --ignore=tests/test_site.py --ignore=tests/test_feedback.py --ignore=tests/test_sandbox.py --ignore=tests/test_demo.py \
    --junitxml="$OUT/tests.xml" tests 2>&1 | tee "$OUT/tests.log" || status=$?
# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
"$PY" -m bench --device "$DEVICE" ${BENCH_ARGS:-} --out "$OUT/bench.md" || status=$?
echo "gpu-check: tests, benchmark table and machine in $OUT/ (exit $status)"
exit $status
