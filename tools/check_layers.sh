#!/usr/bin/env bash
# tools/check_layers.sh -- enforces the layer rule of STYLE.md §2.2 on #include lines:
#   base -> proto -> net -> {lb, store, coord, app, harness} -> cli -> main
# A file may include its own component and earlier layers only; components never include each
# other; base and proto never include <uv.h>. Prints each violation; exits 1 if any.
set -u
cd "$(dirname "$0")/.."

rank() {
    case "$1" in
        base) echo 0 ;; proto) echo 1 ;; net) echo 2 ;;
        lb|store|coord|app|harness) echo 3 ;; cli) echo 4 ;; *) echo 9 ;;
    esac
}

bad=0
for f in src/*/*.c src/*/*.h; do
    comp=$(basename "$(dirname "$f")")
    r=$(rank "$comp")
    while IFS= read -r inc; do
        dep=${inc%%/*}
        [ "$dep" = "$comp" ] && continue
        dr=$(rank "$dep")
        if [ "$dr" -ge "$r" ]; then
            echo "$f: includes \"$inc\" ($dep may not be used from $comp)"
            bad=1
        fi
    done < <(sed -n 's/^#include "\([a-z_]*\/[^"]*\)".*/\1/p' "$f")
    if [ "$r" -le 1 ] && grep -q '^#include <uv.h>' "$f"; then
        echo "$f: base and proto must not include <uv.h>"
        bad=1
    fi
done
if [ $bad -eq 0 ]; then
    echo "layers: ok"
fi
exit $bad
