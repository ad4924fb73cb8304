# The two commands (README):  make demo   |   make test
# Both create .venv and install everything on a fresh machine first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test test-slow fuzz bench bench-matrix bench-mix bench-all bench-suite generation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel (and the version executorch 1.5.1 needs)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/pocketgan demo --out demo_out

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
test: setup
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-slow: setup
	$(BIN)/python -m pytest -m slow

# Reliability (issue 17): >= 10,000 fuzzed ONNX and ExecuTorch bundles, 8-thread concept-swap
# stress, bad images and killed exports -> docs/reliability.md; fails if any case failed.
# Scratch and the cached ExecuTorch exports live in out/reliability. About an hour on 2 cores
# (the 10,000 bundles take most of it); FUZZ_ARGS="--scale 0.05" gives a quick, smaller run,
# FUZZ_ARGS="--only bundles images" one part.
fuzz: setup
	$(BIN)/python -m tests.reliability --out docs/reliability.md $(FUZZ_ARGS)

bench: setup
	mkdir -p out
	$(BIN)/python -m pytest benchmarks/test_slice_latency.py --benchmark-json=out/bench-slice.json --benchmark-columns=median,iqr,rounds
	$(BIN)/python -m pocketgan.bench.report slice out/bench-slice.json | tee out/bench-slice.md

# Every backend x precision x concept mode (exports 8 variants of the default bundle
# first, about 30 min on 2 cores, cached with pocketgan bench's exports in out/bench-cache).
# Writes docs/export-matrix.md; fails if a claim is unmet.
bench-matrix: setup
	mkdir -p out
	$(BIN)/python -m pytest benchmarks/test_export_matrix.py --benchmark-json=out/bench-matrix.json --benchmark-columns=median,iqr,rounds
	$(BIN)/python -m pocketgan.bench.report matrix out/bench-matrix.json docs/export-matrix.md

# What strength and blending cost per backend (docs/strength-and-blending.md), about 5 min.
bench-mix: setup
	@mkdir -p out
	$(BIN)/python -m pytest benchmarks/test_mix_latency.py --benchmark-json=out/bench-mix.json --benchmark-columns=median,iqr,rounds

# pocketgan bench: every backend x precision x concept mode at 256 and 512, with the
# pix2pix peer, GEMM peak, cold open, set_concept, peak memory -> docs/benchmarks/
bench-all: setup
	$(BIN)/pocketgan bench --out docs/benchmarks --cache out/bench-cache

# The same measurements as bench-all, timed by pytest-benchmark (BENCH_* variables:
# benchmarks/test_bench_suite.py), with the same export cache.
bench-suite: setup
	mkdir -p out
	$(BIN)/python -m pytest benchmarks/test_bench_suite.py --benchmark-json=out/bench-suite.json
	$(BIN)/python -m pocketgan.bench.report suite out/bench-suite.json out/bench-suite

# One-step generation (docs/one-step-generation.md): the teacher, its ODE pairs, the loss
# ablation's students, the report and the shipped bundle, in out/generation. Every step is
# resumable: rerun after a kill. Hours on 2 cores (the teacher most of it); GEN_TEACHER_STEPS
# and GEN_STUDENT_STEPS scale it.
GEN := out/generation
GEN_TEACHER_STEPS ?= 1750
GEN_STUDENT_STEPS ?= 500
GEN_GAN_STEPS ?= 300
GEN_NETS := pocketgan/generation/feature_nets
GEN_STUDENT = $(BIN)/pocketgan train-generation-student --pairs $(GEN)/pairs --teacher $(GEN)/teacher/pipeline \
	--batch-size 32 --checkpoint-every 100 --threads 1 --no-progress --perceptual-features $(GEN_NETS)/perceptual
generation: setup
	$(BIN)/pocketgan train-generation-teacher --out $(GEN)/teacher --steps $(GEN_TEACHER_STEPS) --threads 1
	$(BIN)/pocketgan distill-data --noise 3000 --teacher generation:$(GEN)/teacher/pipeline --out $(GEN)/pairs \
		--steps 25 --guidance-scale 1.5 --batch-size 100
	$(GEN_STUDENT) --out $(GEN)/students/mse --steps $(GEN_STUDENT_STEPS) --lr 1e-4 --mse 1 & \
	$(GEN_STUDENT) --out $(GEN)/students/lpips --steps $(GEN_STUDENT_STEPS) --lr 1e-4 --mse 0 --perceptual 10 --no-ensemble & \
	$(GEN_STUDENT) --out $(GEN)/students/elpips --steps $(GEN_STUDENT_STEPS) --lr 1e-4 --mse 0 --perceptual 10 & \
	wait
	$(GEN_STUDENT) --out $(GEN)/students/elpips-gan --init $(GEN)/students/elpips --steps $(GEN_GAN_STEPS) --mse 0 \
		--perceptual 10 --gan 0.05 --r1-gamma 1 --mix-and-match & \
	$(GEN_STUDENT) --out $(GEN)/students/elpips-more --init $(GEN)/students/elpips --steps $(GEN_GAN_STEPS) --mse 0 \
		--perceptual 10 & \
	wait
	$(BIN)/python -m pocketgan.generation.report --teacher $(GEN)/teacher/pipeline --out docs/one-step-generation \
		--student MSE=$(GEN)/students/mse --student LPIPS=$(GEN)/students/lpips \
		--student E-LPIPS=$(GEN)/students/elpips --student "E-LPIPS, more steps"=$(GEN)/students/elpips-more \
		--student "E-LPIPS + GAN"=$(GEN)/students/elpips-gan
	$(BIN)/python -m pocketgan.generation.default_bundle --teacher $(GEN)/teacher/pipeline \
		--student $(GEN)/students/elpips-more --out pocketgan/default_generation_bundle

clean:
	rm -rf $(VENV) demo_out out .pytest_cache .benchmarks
