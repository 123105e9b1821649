# Sourced by bench/numpy_compare.sh and bench/peers.sh: makes sure Debian's
# NumPy runs on OpenBLAS and picks OpenBLAS's kernel set. Sets py (the
# Python to use), core (the OpenBLAS core to ask for) and LD_LIBRARY_PATH,
# and defines run_numpy, which runs Python with OPENBLAS_CORETYPE=$core and
# without OPENBLAS_L2_SIZE, for that command only.
#
# Installs only what is missing: python3-numpy if /usr/bin/python3 cannot
# import numpy, and libopenblas0-pthread if OpenBLAS is absent (Debian's
# numpy links the generic libblas.so.3, which is the slow reference BLAS
# unless OpenBLAS provides it). Uses /usr/bin/python3 (Debian's NumPy),
# not whatever python3 comes first on PATH.
#
# OpenBLAS 0.3.21 takes some AVX-512 CPUs for Haswell and runs its AVX2
# kernels at about half the GEMM throughput, and an environment may set
# OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) to that. On a CPU with AVX-512
# the NumPy side runs with OPENBLAS_CORETYPE=SkylakeX, so peers and peaks
# use the AVX-512 kernels, and the Python scripts check that OpenBLAS really
# loaded them (--expect-core).
py=/usr/bin/python3

apt_install() {
  if ! apt-get install -y "$@" >/dev/null; then
    apt-get update >/dev/null && apt-get install -y "$@" >/dev/null
  fi
}
if ! "$py" -c 'import numpy' 2>/dev/null; then
  echo "installing python3-numpy" >&2
  apt_install python3-numpy
fi
multiarch=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("MULTIARCH") or "")')
openblas=/usr/lib/$multiarch/openblas-pthread
if [ ! -e "$openblas/libblas.so.3" ]; then
  echo "installing libopenblas0-pthread" >&2
  apt_install libopenblas0-pthread
fi
# Load OpenBLAS's libblas.so.3 whatever the system's BLAS alternative is.
export LD_LIBRARY_PATH=$openblas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

core=Haswell
if grep -qw avx512f /proc/cpuinfo; then core=SkylakeX; fi

run_numpy() {
  env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE="$core" "$py" "$@"
}

# banner prints the machine, the kernels, Go's version, the load and the
# OpenBLAS core asked for, for the head of a benchmark's output.
banner() {
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
    "fastattn kernels: $(go run ./bench/kernelslevel); $(go version | cut -d' ' -f3)"
  echo "load: $(uptime | sed 's/.*load average/load average/'); OpenBLAS core asked for: $core"
}
