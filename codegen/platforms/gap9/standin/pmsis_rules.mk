# pmsis_rules.mk - stand-in for the GAP SDK's $(RULES_DIR)/pmsis_rules.mk (our own): builds a
# GAP SDK application Makefile (APP, APP_SRCS, APP_CFLAGS) against the PMSIS stand-in for QEMU
# riscv32 virt, so that the project's GAP SDK Makefile itself is checked without the SDK:
#   make RULES_DIR=$PWD/standin        -> BUILD_DIR/$(APP).elf (qemu-system-riscv32 -M virt -bios none)
STANDIN := $(dir $(lastword $(MAKEFILE_LIST)))
CROSS_CC ?= riscv64-unknown-elf-gcc
CC := $(CROSS_CC)
BUILD_DIR ?= build
SI_ARCH := -march=rv32imc -mabi=ilp32 -mcmodel=medany -misa-spec=2.2
SI_CFLAGS := $(SI_ARCH) -ffreestanding -ffunction-sections -fdata-sections -I$(STANDIN) $(APP_CFLAGS)
SI_SRCS := $(APP_SRCS) $(STANDIN)pmsis_standin.c $(STANDIN)../../../runtime/nr_libc.c

all: $(BUILD_DIR)/$(APP).elf

$(BUILD_DIR)/$(APP).elf: $(SI_SRCS) $(STANDIN)crt0.S $(STANDIN)virt.ld
	@mkdir -p $(BUILD_DIR)
	$(CC) $(SI_CFLAGS) $(SI_SRCS) $(STANDIN)crt0.S -nostdlib -nostartfiles -Wl,--gc-sections \
	    -T$(STANDIN)virt.ld -o $@ -lgcc

clean:
	rm -rf $(BUILD_DIR)

.PHONY: all clean
