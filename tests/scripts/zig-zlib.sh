# shellcheck shell=bash
# Run by the runner as `bash -euo pipefail SCRIPT`.
# Builds zlib statically with the zig wrappers and links zlib's own test
# program against it, then reports the highest GLIBC symbol version it needs.
# Env: SOURCE (zlib tarball), TOOLCHAIN (build/toolchain), RELOCPY_ZIG, RELOCPY_ZIG_TARGET.
mkdir src && tar -xzf "$SOURCE" -C src --strip-components=1
cd src || exit 1
export CC="$TOOLCHAIN/zig-cc" AR="$TOOLCHAIN/zig-ar" RANLIB="$TOOLCHAIN/zig-ranlib" CFLAGS="-O2 -fPIC"
./configure --static --prefix="$PWD/../prefix"
make -j2 libz.a
make install
"$CC" -O2 -I../prefix/include test/example.c ../prefix/lib/libz.a -o ../example
../example
echo "glibc versions: $(objdump -T ../example | grep -o 'GLIBC_[0-9.]*' | sort -uV | tr '\n' ' ')"
echo "max glibc: $(objdump -T ../example | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)"
echo "host glibc: $(ldd --version | head -n 1)"
