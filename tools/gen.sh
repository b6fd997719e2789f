#!/usr/bin/env bash
# Regenerates the Python code, the gateways' descriptor set and the OpenAPI document from proto/.
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
# The OpenAPI document: protoc-gen-swagger (Debian's golang-grpc-gateway) per proto file (its
# version merges only files of one package), then tools/openapi.py merges, converts to OpenAPI 3
# (npm swagger2openapi) and corrects it to what the gateway does.
command -v protoc-gen-swagger >/dev/null ||
  { echo "protoc-gen-swagger is missing: apt-get install golang-grpc-gateway" >&2; exit 1; }
swagger=$(mktemp -d)
trap 'rm -rf "$swagger"' EXIT
for proto in "${protos[@]}"; do
  "$py" -m grpc_tools.protoc -Iproto -Ithird_party --swagger_out=allow_delete_body=true:"$swagger" "${proto#proto/}"
done
PYTHONPATH="." "$py" -m tools.openapi "$swagger" "$out/expense_mesh.binpb" "$out/openapi/expense-mesh.openapi.json"
# docs/events.md is rendered from gen/ and the services, so only a regeneration of gen/ renews it.
if [[ $out == gen ]]; then
  PYTHONPATH=".:gen" "$py" -m tools.events_doc
fi
