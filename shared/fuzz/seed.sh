#!/usr/bin/env bash
# Seeds the fuzz corpora (shared/fuzz/corpus/<target>/, not committed) from the samples in
# events/ and shared/fuzz/seeds/. Existing corpus files are kept: the corpora grow run by run.
set -euo pipefail
fuzz="$(cd "$(dirname "$0")" && pwd)"
events="$fuzz/../../events"
corpus="$fuzz/corpus"
# cp, keeping files already there (portable, unlike cp -n's exit status).
keep() {
    local dir="${*: -1}"
    for f in "${@:1:$#-1}"; do
        [ -e "$dir/$(basename "$f")" ] || cp "$f" "$dir/"
    done
}
for target in inbound_event inbound_structured manifest step_input registration stream_batch; do
    mkdir -p "$corpus/$target"
done
for f in "$events"/*.json; do
    case "$(basename "$f")" in
        step-input*) keep "$f" "$corpus/step_input/" ;;
        dynamodb-stream*) keep "$f" "$corpus/stream_batch/" ;;
        *) keep "$f" "$corpus/inbound_event/" ;;
    esac
done
# The structured target reads the samples itself; its inputs are the choices of mutations.
keep "$events"/*.json "$corpus/inbound_structured/"
keep "$events"/manifests/*/*.json "$fuzz"/seeds/manifest-*.txt "$corpus/manifest/"
keep "$fuzz"/seeds/registration.json "$corpus/registration/"
echo "seeded $(find "$corpus" -type f | wc -l) corpus files under $corpus"
