/* speak: libdia from C. Generates a script twice with the same seed, once with the push API
 * (a callback per chunk; writes OUT.wav and OUT-push.npy) and once with the pull API
 * (dia_stream_next until is_last; writes OUT-pull.npy), and checks both gave the same codes.
 * The .npy files are written as `dia-run --save-codes` writes them (int64 [frames, 9]), so
 * they can be compared with it byte for byte.
 *
 *   cc -std=c99 -Wall -I capi/include capi/examples/speak.c -L TARGET/debug -ldia -o speak
 *   ./speak BUNDLE "[S1] Hello." OUT [SEED] [MAX_TOKENS] [cpu|cuda|auto [CUDA_GRAPH]]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dia.h"

static int fail(const char *what, DiaStatus status) {
  fprintf(stderr, "speak: %s failed (status %d): %s\n", what, (int)status, dia_last_error());
  return 1;
}

/* Writes codes [frames][channels] as an int64 .npy, the header padded to 64 bytes as numpy
 * (and dia-run) do. */
static int write_npy(const char *path, const int64_t *codes, size_t frames, size_t channels) {
  char dict[128];
  int len = snprintf(dict, sizeof dict,
                     "{'descr': '<i8', 'fortran_order': False, 'shape': (%zu, %zu), }", frames,
                     channels);
  size_t unpadded = 10 + (size_t)len + 1;
  size_t pad = (64 - unpadded % 64) % 64;
  uint16_t header_len = (uint16_t)((size_t)len + pad + 1);
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  unsigned char hl[2] = {(unsigned char)(header_len & 0xff), (unsigned char)(header_len >> 8)};
  fwrite(hl, 1, 2, f);
  fwrite(dict, 1, (size_t)len, f);
  for (size_t i = 0; i < pad; i++) fputc(' ', f);
  fputc('\n', f);
  /* Little-endian hosts only (x86-64, arm64), as .npy '<i8' says. */
  fwrite(codes, sizeof *codes, frames * channels, f);
  return fclose(f);
}

static void put_u32(FILE *f, uint32_t v) {
  unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                        (unsigned char)(v >> 24)};
  fwrite(b, 1, 4, f);
}

static void put_u16(FILE *f, uint16_t v) {
  unsigned char b[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
  fwrite(b, 1, 2, f);
}

/* 16-bit PCM mono WAV. */
static int write_wav(const char *path, const float *samples, size_t n, uint32_t rate) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  fwrite("RIFF", 1, 4, f);
  put_u32(f, (uint32_t)(36 + n * 2));
  fwrite("WAVEfmt ", 1, 8, f);
  put_u32(f, 16);
  put_u16(f, 1);
  put_u16(f, 1);
  put_u32(f, rate);
  put_u32(f, rate * 2);
  put_u16(f, 2);
  put_u16(f, 16);
  fwrite("data", 1, 4, f);
  put_u32(f, (uint32_t)(n * 2));
  for (size_t i = 0; i < n; i++) {
    float s = samples[i] > 1.0f ? 1.0f : samples[i] < -1.0f ? -1.0f : samples[i];
    put_u16(f, (uint16_t)(int16_t)(s * 32767.0f));
  }
  return fclose(f);
}

struct Pushed {
  size_t chunks, samples;
  int saw_last;
};

/* The push API's callback: counts what arrives; returns nonzero to go on. */
static int32_t on_chunk(const float *samples, size_t n, const DiaProgress *p, void *user_data) {
  struct Pushed *pushed = user_data;
  (void)samples;
  pushed->chunks++;
  pushed->samples += n;
  if (p->is_last) pushed->saw_last = 1;
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr,
            "usage: speak BUNDLE TEXT OUT_PREFIX [SEED] [MAX_TOKENS] [cpu|cuda|auto [CUDA_GRAPH]]\n");
    return 2;
  }
  const char *bundle = argv[1], *text = argv[2], *out = argv[3];
  uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 7;
  size_t max_tokens = argc > 5 ? (size_t)strtoull(argv[5], NULL, 10) : 0;
  char path[4096];
  int rc = 1;
  printf("libdia %s (header %s)\n", dia_version(), DIA_VERSION_STRING);

  DiaModelOptions mopts;
  DiaStatus st = dia_model_options_init(&mopts, sizeof mopts);
  if (st != DIA_OK) return fail("dia_model_options_init", st);
  const char *ep = argc > 6 ? argv[6] : "cpu";
  mopts.execution_provider = strcmp(ep, "cuda") == 0   ? DIA_EP_CUDA
                             : strcmp(ep, "auto") == 0 ? DIA_EP_AUTO
                                                       : DIA_EP_CPU;
  mopts.cuda_graph = argc > 7 ? atoi(argv[7]) : 0;
  DiaModel *model = NULL;
  st = dia_model_load(bundle, &mopts, &model);
  if (st != DIA_OK) return fail("dia_model_load", st);
  uint32_t rate = 0;
  dia_sample_rate(model, &rate);
  DiaExecutionProvider used = DIA_EP_CPU;
  dia_model_provider(model, &used);
  size_t warnings = 0;
  dia_model_warning_count(model, &warnings);
  for (size_t i = 0; i < warnings; i++) {
    const char *w = NULL;
    if (dia_model_warning(model, i, &w) == DIA_OK) fprintf(stderr, "warning: %s\n", w);
  }
  if (used != DIA_EP_CPU) printf("running on %s\n", used == DIA_EP_CUDA ? "CUDA" : "Core ML");

  DiaGenerateOptions gen;
  dia_generate_options_init(&gen, sizeof gen);
  gen.text = text;
  gen.use_seed = 1;
  gen.seed = seed;
  gen.max_tokens = max_tokens;

  /* Push: chunks arrive in the callback; the whole result comes back in `audio`. */
  struct Pushed pushed = {0, 0, 0};
  DiaAudio *audio = NULL;
  DiaStream *stream = NULL;
  st = dia_generate(model, &gen, on_chunk, &pushed, &audio);
  if (st != DIA_OK) {
    fail("dia_generate", st);
    goto done;
  }
  DiaAudioData data = {.struct_size = sizeof data};
  st = dia_audio_get(audio, &data);
  if (st != DIA_OK) {
    fail("dia_audio_get", st);
    goto done;
  }
  if (!pushed.saw_last || pushed.samples != data.n) {
    fprintf(stderr, "speak: the callback saw %zu samples (last flag %d), the result has %zu\n",
            pushed.samples, pushed.saw_last, data.n);
    goto done;
  }
  snprintf(path, sizeof path, "%s.wav", out);
  if (write_wav(path, data.samples, data.n, data.sample_rate) != 0) {
    perror(path);
    goto done;
  }
  snprintf(path, sizeof path, "%s-push.npy", out);
  if (write_npy(path, data.codes, data.frames, data.channels) != 0) {
    perror(path);
    goto done;
  }
  printf("push: %zu chunks, %zu samples at %u Hz, %zu frames of codes\n", pushed.chunks, data.n,
         rate, data.frames);

  /* Pull: ask for chunks until the one with is_last = 1, which carries the last samples. */
  st = dia_stream_start(model, &gen, &stream);
  if (st != DIA_OK) {
    fail("dia_stream_start", st);
    goto done;
  }
  DiaChunk chunk = {.struct_size = sizeof chunk};
  size_t chunks = 0, samples = 0;
  int mismatch = 0;
  do {
    st = dia_stream_next(stream, &chunk);
    if (st != DIA_OK) {
      fail("dia_stream_next", st);
      goto done;
    }
    /* Same seed, same codes, same audio (both stream the same way). */
    if (samples + chunk.n > data.n ||
        memcmp(chunk.samples, data.samples + samples, chunk.n * sizeof(float)) != 0)
      mismatch = 1;
    chunks++;
    samples += chunk.n;
  } while (!chunk.is_last);
  if (dia_stream_next(stream, &chunk) != DIA_ERR_STREAM_ENDED) {
    fprintf(stderr, "speak: a call after the last chunk should say DIA_ERR_STREAM_ENDED\n");
    goto done;
  }
  DiaCodes codes = {.struct_size = sizeof codes};
  st = dia_stream_codes(stream, &codes);
  if (st != DIA_OK) {
    fail("dia_stream_codes", st);
    goto done;
  }
  snprintf(path, sizeof path, "%s-pull.npy", out);
  if (write_npy(path, codes.codes, codes.frames, codes.channels) != 0) {
    perror(path);
    goto done;
  }
  printf("pull: %zu chunks, %zu samples\n", chunks, samples);
  if (mismatch || samples != data.n || codes.frames != data.frames ||
      memcmp(codes.codes, data.codes, data.frames * data.channels * sizeof(int64_t)) != 0) {
    fprintf(stderr, "speak: the pull API gave other audio or codes than the push API\n");
    goto done;
  }
  rc = 0;

done:
  dia_stream_free(stream);
  dia_audio_free(audio);
  dia_model_free(model);
  return rc;
}
