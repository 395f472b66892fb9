#!/usr/bin/env bash
# Builds the container image's root filesystem in ROOTFS from the binaries in BIN_DIR:
# the entries of files.txt, every shared library the binaries still need (ldd) and the dynamic
# loader, with Debian's merged-/usr layout. The Dockerfile copies ROOTFS into an empty image;
# scripts/rootfs-check.sh runs the binaries from it. Usage: make-rootfs.sh BIN_DIR ROOTFS
set -euo pipefail
if (($# != 2)); then
  echo "usage: $0 BIN_DIR ROOTFS" >&2
  exit 2
fi
bin_dir=$1
rootfs=$2
list="$(dirname "$0")/files.txt"

mkdir -p "$rootfs"/usr/bin "$rootfs"/usr/lib "$rootfs"/usr/lib64 "$rootfs"/etc "$rootfs"/tmp
chmod 1777 "$rootfs"/tmp
# Merged /usr, as in Debian 12: the loader path (/lib64/ld-linux-x86-64.so.2) and the library
# paths ldd prints (/lib/x86_64-linux-gnu/...) resolve through these links.
for dir in bin lib lib64 sbin; do
  [ -e "$rootfs/$dir" ] || ln -s "usr/$dir" "$rootfs/$dir"
done
mkdir -p "$rootfs"/usr/sbin

# Copies host file $1 to the same path under the rootfs (following links: one regular file).
copy_file() {
  local dest
  dest="$rootfs$(realpath -m "$(dirname "$1")")/$(basename "$1")"
  mkdir -p "$(dirname "$dest")"
  cp -L --preserve=mode "$1" "$dest"
}

binaries=()
libs=()
while read -r kind name flag; do
  case "$kind" in
    "" | \#*) continue ;;
    bin)
      if [ -x "$bin_dir/$name" ]; then
        cp --preserve=mode "$bin_dir/$name" "$rootfs/usr/bin/$name"
        binaries+=("$bin_dir/$name")
      elif [ "${flag:-}" = optional ]; then
        echo "make-rootfs: $name not built, skipped (optional)" >&2
      else
        echo "make-rootfs: $bin_dir/$name missing" >&2
        exit 1
      fi
      ;;
    lib) libs+=("$name") ;;
    *)
      echo "make-rootfs: $list: unknown kind '$kind'" >&2
      exit 1
      ;;
  esac
done <"$list"

# Shared libraries and the loader, as ldd resolves them on the build machine.
declare -A needed=()
for binary in "${binaries[@]}"; do
  ldd_out=$(ldd "$binary")
  if grep -q "not found" <<<"$ldd_out"; then
    echo "make-rootfs: $binary: $(grep "not found" <<<"$ldd_out")" >&2
    exit 1
  fi
  while read -r path; do
    needed[$path]=1
  done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$ldd_out")
done
libc_dir=""
for path in "${!needed[@]}"; do
  copy_file "$path"
  [[ "$(basename "$path")" == libc.so.6 ]] && libc_dir=$(dirname "$path")
done
if [ -z "$libc_dir" ]; then
  echo "make-rootfs: no binary needs libc.so.6?" >&2
  exit 1
fi
for lib in "${libs[@]}"; do
  copy_file "$libc_dir/$lib"
done
echo "make-rootfs: $rootfs: ${#binaries[@]} binaries, $((${#needed[@]} + ${#libs[@]})) libraries" \
  "and loader entries, $(du -sh "$rootfs" | cut -f1)"
