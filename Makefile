# tandem -- one non-recursive GNU makefile.
#   make                      build build/tandem
#   make check                unit tests, fuzz corpus replay, integration tests
#   make SANITIZER=address    ASan+UBSan build in build-asan/ (same targets)
#   make demo                 the architecture's story, measured
#   make fuzz                 libFuzzer binaries (clang) in build-fuzz/

CC ?= cc
PYTHON ?= /usr/bin/python3
SANITIZER ?=
WERROR ?= -Werror

ifeq ($(SANITIZER),)
BUILD ?= build
SANFLAGS :=
else
BUILD ?= build-asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp
PKGS := libuv hiredis libcjson inih libcurl

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat=2 -Wno-format-zero-length $(WERROR)
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(CFLAGS) $(SANFLAGS) -MMD -MP -Isrc -I$(LLHTTP_INC) \
	$(shell pkg-config --cflags $(PKGS))
LDLIBS := $(shell pkg-config --libs $(PKGS)) -lm -lpthread
LDFLAGS += $(SANFLAGS)

SRC := $(sort $(wildcard src/*/*.c))
OBJ := $(SRC:src/%.c=$(BUILD)/obj/%.o)
LIB_OBJ := $(filter-out $(BUILD)/obj/cli/%,$(OBJ))
CLI_OBJ := $(filter $(BUILD)/obj/cli/%,$(OBJ))
LLHTTP_OBJ := $(BUILD)/llhttp/llhttp.o $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
REPLAY_BIN := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=$(BUILD)/tests/replay_%)

.PHONY: all check unit fuzz-replay integration integration-quick demo fuzz clean lint format
all: $(BUILD)/tandem

$(BUILD)/libtandem.a: $(LIB_OBJ) $(LLHTTP_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tandem: src/main.c $(CLI_OBJ) $(BUILD)/libtandem.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) $(LDFLAGS) -o $@ src/main.c $(CLI_OBJ) $(BUILD)/libtandem.a $(LDLIBS)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) -c -o $@ $<

# llhttp's generated C is compiled from Debian's node-llhttp as shipped.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(CC) -std=c11 $(CFLAGS) $(SANFLAGS) -I$(LLHTTP_INC) -w -c -o $@ $<

$(BUILD)/tests/test_%: tests/unit/test_%.c $(BUILD)/libtandem.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) -Wno-missing-prototypes $(LDFLAGS) -o $@ $< $(BUILD)/libtandem.a \
		$(LDLIBS) -lcmocka

$(BUILD)/tests/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(BUILD)/libtandem.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(WARN) -Wno-missing-prototypes $(LDFLAGS) -o $@ $< tests/fuzz/replay.c \
		$(BUILD)/libtandem.a $(LDLIBS)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

fuzz-replay: $(REPLAY_BIN)
	@set -e; for t in $(REPLAY_BIN); do n=$${t##*/replay_}; $$t tests/fuzz/corpus/$$n; done

integration: $(BUILD)/tandem
	TANDEM_BIN=$(abspath $(BUILD)/tandem) TANDEM_SANITIZER=$(SANITIZER) $(PYTHON) -m pytest -q -x tests/integration $(PYTEST_ARGS)

integration-quick: $(BUILD)/tandem
	TANDEM_BIN=$(abspath $(BUILD)/tandem) TANDEM_SANITIZER=$(SANITIZER) $(PYTHON) -m pytest -q -x -m "not slow" tests/integration $(PYTEST_ARGS)

check: all unit fuzz-replay integration

demo: $(BUILD)/tandem
	$(BUILD)/tandem demo

# libFuzzer builds (clang): build-fuzz/fuzz_<codec>, run with a corpus dir. The library is
# compiled once (instrumented, without libFuzzer's main) and every target links against it.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=address,undefined -Isrc -I$(LLHTTP_INC) \
	$(shell pkg-config --cflags $(PKGS)) -MMD -MP
FUZZ_LIB_OBJ := $(filter-out build-fuzz/obj/cli/%,$(SRC:src/%.c=build-fuzz/obj/%.o)) \
	$(patsubst $(LLHTTP_SRC)/%.c,build-fuzz/llhttp/%.o,$(wildcard $(LLHTTP_SRC)/*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)

build-fuzz/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build-fuzz/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build-fuzz/libtandem.a: $(FUZZ_LIB_OBJ)
	ar rcs $@ $^

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c build-fuzz/libtandem.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< build-fuzz/libtandem.a $(LDLIBS)

fuzz: $(FUZZ_BIN)

-include $(wildcard build-fuzz/obj/*/*.d build-fuzz/llhttp/*.d build-fuzz/*.d)

lint:
	tools/check_layers.sh

format:
	clang-format -i $(SRC) src/main.c $(wildcard src/*/*.h) $(UNIT_SRC) $(FUZZ_SRC)

clean:
	rm -rf build build-asan build-fuzz build-clang

-include $(OBJ:.o=.d)
