# deepcomp: `make demo` and `make test` are all a fresh clone needs.
# `make test-fast` (under a minute) skips the tests marked rtl (Verilator builds), board
# (bitstream builds) and slow (model training); `make test` runs everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= out/demo
MNIST  ?=
PES    ?= 4

ifeq ($(MNIST),)
  DATA  := --dataset digits
  TRAIN := --arch cnn8 --epochs 60
  PRUNE := --density 0.6,0.4,0.5 --bits 4,4,4 --lr 0.03 --prune-epochs 5 --final-epochs 10 --finetune-epochs 10
else
  DATA  := --dataset mnist --data-dir $(MNIST)
  TRAIN := --arch lenet300 --epochs 20 --augment 2
  PRUNE := --density 0.06,0.08,0.25 --augment 2
endif

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,torch]'
	touch $@

demo: $(STAMP)
	$(BIN)/deepcomp train $(DATA) $(TRAIN) -o $(OUT)/dense.pt
	$(BIN)/deepcomp compress $(OUT)/dense.pt $(DATA) $(PRUNE) -o $(OUT)/model.dcz
	$(BIN)/deepcomp eval $(OUT)/model.dcz $(DATA)
	$(BIN)/deepcomp stats $(OUT)/model.dcz
	$(BIN)/deepcomp plot $(OUT)/model.dcz -o $(OUT)/plots
	$(BIN)/deepcomp rom $(OUT)/model.dcz --pes $(PES) $(DATA) -o $(OUT)/model.rom
	$(BIN)/deepcomp golden $(OUT)/model.rom $(DATA)
	$(BIN)/deepcomp verilog --rom $(OUT)/model.rom --pes $(PES) -o $(OUT)/verilog
	$(BIN)/deepcomp sim --rom $(OUT)/model.rom --pes $(PES) $(DATA) --images 20 --build-dir $(OUT)/sim_build

# One test file per worker (--dist loadfile): module-scoped Verilator builds are made once.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# markers in pyproject.toml ([tool.pytest.ini_options])
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not rtl and not board and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) out build sim_build .pytest_cache
