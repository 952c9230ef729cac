#!/usr/bin/env bash
# Install what the planner needs on a fresh Debian machine (run as root or with sudo rights).
#   bash scripts/setup.sh          Python package and its runtime dependencies
#   bash scripts/setup.sh --test   also the test dependencies, the Arm/RISC-V cross compilers, QEMU
#                                  and ccache (planner run uses it when present: the kernel library
#                                  then compiles once per target)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

# the host C toolchain: planner run --target host (and the tests' host builds, sanitizers, the
# QEMU instruction-count plugin) need gcc, make, the C library headers and nm (binutils)
APT=(gcc make libc6-dev binutils)
need=0
for tool in gcc make nm; do command -v "$tool" >/dev/null || need=1; done
[ -e /usr/include/stdio.h ] || need=1

if [ "${1:-}" = "--test" ]; then
  APT+=(gcc-arm-none-eabi qemu-system-arm gcc-riscv64-unknown-elf qemu-system-misc picolibc-arm-none-eabi ccache)
  for tool in arm-none-eabi-gcc qemu-system-arm riscv64-unknown-elf-gcc qemu-system-riscv32 ccache; do
    command -v "$tool" >/dev/null || need=1
  done
  [ -d /usr/lib/picolibc/arm-none-eabi ] || need=1
fi

if [ "$need" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${APT[@]}" >/dev/null
fi

# editable_mode=compat: the checkout goes on sys.path through a plain .pth line; the default
# editable finder costs every `planner` process ~40 ms of imports at start (issue 9,
# benchmarks/startup_bench.py)
if [ "${1:-}" = "--test" ]; then
  python3 -m pip install -q --disable-pip-version-check -e ".[test]" --config-settings editable_mode=compat
else
  python3 -m pip install -q --disable-pip-version-check -e . --config-settings editable_mode=compat
fi
