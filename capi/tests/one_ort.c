/* A host that loads ONNX Runtime itself, from its own path, and then libdia's model with no
 * library path: the process must end up with ONE libonnxruntime (the host's), not a second
 * copy from libdia's own search (.onnxruntime/, ORT_DYLIB_PATH). Linux (reads
 * /proc/self/maps). Run by capi/examples/run.sh.
 *
 *   one_ort HOST_LIBONNXRUNTIME BUNDLE
 *
 * With --option, the host loads nothing and gives the path in DiaModelOptions instead: the
 * one copy mapped must be that file. With --missing, the path names no file: the load must
 * fail with DIA_ERR_ONNXRUNTIME and a message that names the path.
 *
 *   one_ort --option LIBONNXRUNTIME BUNDLE
 *   one_ort --missing NO_SUCH_FILE BUNDLE
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dia.h"

/* Distinct files (device and inode) mapped whose path names libonnxruntime; the first path
 * goes to `first`. */
static int count_ort_mappings(char *first, size_t first_len) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  char line[8192];
  char seen[16][64];
  int n = 0;
  first[0] = 0;
  while (fgets(line, sizeof line, f)) {
    char dev[32], path[PATH_MAX];
    unsigned long inode;
    path[0] = 0;
    if (sscanf(line, "%*s %*s %*s %31s %lu %4095[^\n]", dev, &inode, path) < 2) continue;
    if (!strstr(path, "libonnxruntime")) continue;
    char key[64];
    snprintf(key, sizeof key, "%s:%lu", dev, inode);
    int known = 0;
    for (int i = 0; i < n; i++) known |= strcmp(seen[i], key) == 0;
    if (!known && n < 16) {
      strcpy(seen[n++], key);
      printf("mapped: %s (%s)\n", path, key);
      if (!first[0]) snprintf(first, first_len, "%s", path);
    }
  }
  fclose(f);
  return n;
}

int main(int argc, char **argv) {
  const char *mode = "--host";
  if (argc == 4) {
    mode = argv[1];
    argv++;
    argc--;
  }
  if (argc != 3) {
    fprintf(stderr, "usage: one_ort [--option|--missing] LIBONNXRUNTIME BUNDLE\n");
    return 2;
  }
  void *host_ort = NULL;
  DiaModelOptions opts;
  dia_model_options_init(&opts, sizeof opts);
  if (strcmp(mode, "--host") == 0) {
    /* The host's own ONNX Runtime, loaded privately (RTLD_LOCAL, as Python's ctypes and
     * most plug-in hosts do), so its symbols are not global. */
    host_ort = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!host_ort) {
      fprintf(stderr, "one_ort: dlopen %s: %s\n", argv[1], dlerror());
      return 1;
    }
  } else {
    opts.ort_library_path = argv[1];
  }
  DiaModel *model = NULL;
  DiaStatus st = dia_model_load(argv[2], &opts, &model);
  if (strcmp(mode, "--missing") == 0) {
    if (st != DIA_ERR_ONNXRUNTIME || model != NULL || !strstr(dia_last_error(), argv[1])) {
      fprintf(stderr, "one_ort: want DIA_ERR_ONNXRUNTIME naming %s, got %d: %s\n", argv[1],
              (int)st, dia_last_error());
      return 1;
    }
    printf("a missing ONNX Runtime library: %s\n", dia_last_error());
    opts.ort_library_path = NULL;
    st = dia_model_load(argv[2], &opts, &model);
  }
  if (st != DIA_OK) {
    fprintf(stderr, "one_ort: dia_model_load: %s\n", dia_last_error());
    return 1;
  }
  /* And it runs on it. */
  DiaGenerateOptions gen;
  dia_generate_options_init(&gen, sizeof gen);
  gen.text = "[S1] One runtime.";
  gen.use_seed = 1;
  DiaAudio *codes = NULL;
  if (dia_generate_codes(model, &gen, &codes) != DIA_OK) {
    fprintf(stderr, "one_ort: dia_generate_codes: %s\n", dia_last_error());
    return 1;
  }
  char first[PATH_MAX], want[PATH_MAX];
  int n = count_ort_mappings(first, sizeof first);
  int missing = strcmp(mode, "--missing") == 0;
  if (missing) {
    snprintf(want, sizeof want, "%s", first);
  } else if (!realpath(argv[1], want)) {
    perror(argv[1]);
    return 1;
  }
  int rc = 0;
  if (n != 1) {
    fprintf(stderr, "one_ort: %d copies of libonnxruntime are mapped, want 1\n", n);
    rc = 1;
  } else if (strcmp(first, want) != 0) {
    fprintf(stderr, "one_ort: the one mapped is %s, not the host's %s\n", first, want);
    rc = 1;
  } else {
    printf("one ONNX Runtime in the process: %s\n", want);
  }
  dia_audio_free(codes);
  dia_model_free(model);
  if (host_ort) dlclose(host_ort);
  return rc;
}
