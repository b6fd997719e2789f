#!/usr/bin/env bash
# Regenerates the Python code and the gateways' descriptor set from proto/.
# Usage: tools/gen.sh [OUT_DIR]   (default gen/; PY selects the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gen}
py=${PY:-.venv/bin/python}
mapfile -t protos < <(find proto -name '*.proto' | LC_ALL=C sort)
rm -rf "$out" && mkdir -p "$out"
"$py" -m grpc_tools.protoc -Iproto -Ithird_party \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" "${protos[@]}"
# The gateways need the error detail types too, or Envoy drops error bodies.
"$py" -m grpc_tools.protoc -Iproto -Ithird_party \
  --include_imports --include_source_info --descriptor_set_out="$out/expense_mesh.binpb" \
  "${protos[@]}" google/rpc/error_details.proto google/rpc/status.proto
# docs/events.md is rendered from gen/ and the services, so only a regeneration of gen/ renews it.
if [[ $out == gen ]]; then
  PYTHONPATH=".:gen" "$py" -m tools.events_doc
fi
