#!/usr/bin/env bash
# Formats (--fix) or checks (default) every C++ file git knows about under the source folders:
# tracked files plus untracked ones that are not ignored, so new files are covered before their
# first commit. Exits 1 listing the files that need formatting.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fix=0
if [[ "${1:-}" == "--fix" ]]; then
  fix=1
fi

clang_format="${CLANG_FORMAT:-}"
if [[ -z "${clang_format}" ]]; then
  if command -v clang-format-14 >/dev/null 2>&1; then
    clang_format=clang-format-14
  elif command -v clang-format >/dev/null 2>&1; then
    clang_format=clang-format
  else
    echo "format: clang-format not found (run scripts/install-deps.sh)" >&2
    exit 1
  fi
fi

mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
  'include/*.cpp' 'include/*.hpp' 'src/*.cpp' 'src/*.hpp' 'cli/*.cpp' 'cli/*.hpp' \
  'tests/*.cpp' 'tests/*.hpp' 'bench/*.cpp' 'bench/*.hpp' 'examples/*.cpp' 'examples/*.hpp' |
  sort -u)

# Files deleted from the work tree but still in the index are skipped.
existing=()
for f in "${files[@]}"; do
  [[ -f "${f}" ]] && existing+=("${f}")
done

if [[ ${#existing[@]} -eq 0 ]]; then
  echo "format: no C++ files yet"
  exit 0
fi

if [[ ${fix} -eq 1 ]]; then
  "${clang_format}" -i --style=file "${existing[@]}"
  echo "format: formatted ${#existing[@]} files"
  exit 0
fi

bad=()
for f in "${existing[@]}"; do
  if ! "${clang_format}" --dry-run --Werror --style=file "${f}" >/dev/null 2>&1; then
    bad+=("${f}")
  fi
done

if [[ ${#bad[@]} -gt 0 ]]; then
  echo "format: ${#bad[@]} of ${#existing[@]} files need formatting (run 'make format'):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format: ${#existing[@]} files clean"
