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

if [ "${1:-}" = "--test" ]; then
  if ! command -v arm-none-eabi-gcc >/dev/null || ! command -v qemu-system-arm >/dev/null \
     || ! command -v riscv64-unknown-elf-gcc >/dev/null || ! command -v qemu-system-riscv32 >/dev/null \
     || ! command -v ccache >/dev/null || [ ! -d /usr/lib/picolibc/arm-none-eabi ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends \
      gcc-arm-none-eabi qemu-system-arm gcc-riscv64-unknown-elf qemu-system-misc picolibc-arm-none-eabi \
      make ccache >/dev/null
  fi
  python3 -m pip install -q --disable-pip-version-check -e ".[test]"
else
  if ! command -v gcc >/dev/null || ! command -v make >/dev/null; then  # planner run on the host
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends gcc make libc6-dev >/dev/null
  fi
  python3 -m pip install -q --disable-pip-version-check -e .
fi
