/* One model, three threads generating at once: each thread's codes must equal those of the
 * same text and seed generated alone. Run by capi/examples/run.sh (CPU); on a GPU machine
 * with `cuda` (and `1` for CUDA graphs, where generations take turns whole).
 *
 *   threads BUNDLE [cpu|cuda [CUDA_GRAPH]]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dia.h"

#define N 3

static const char *texts[N] = {"[S1] One.", "[S2] Two, too.", "[S1] Three! (laughs)"};

struct Job {
  DiaModel *model;
  int index;
  int64_t *codes;
  size_t len;
  DiaStatus status;
  char error[512];
};

static void *generate(void *arg) {
  struct Job *job = arg;
  DiaGenerateOptions gen;
  dia_generate_options_init(&gen, sizeof gen);
  gen.text = texts[job->index];
  gen.use_seed = 1;
  gen.seed = (uint64_t)job->index;
  DiaAudio *audio = NULL;
  job->status = dia_generate_codes(job->model, &gen, &audio);
  if (job->status != DIA_OK) {
    /* The message is per thread: read it on this one. */
    snprintf(job->error, sizeof job->error, "%s", dia_last_error());
    return NULL;
  }
  DiaAudioData data = {.struct_size = sizeof data};
  dia_audio_get(audio, &data);
  job->len = data.frames * data.channels;
  job->codes = malloc(job->len * sizeof *job->codes);
  memcpy(job->codes, data.codes, job->len * sizeof *job->codes);
  dia_audio_free(audio);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: threads BUNDLE [cpu|cuda [CUDA_GRAPH]]\n");
    return 2;
  }
  DiaModelOptions opts;
  dia_model_options_init(&opts, sizeof opts);
  opts.execution_provider = argc > 2 && strcmp(argv[2], "cuda") == 0 ? DIA_EP_CUDA : DIA_EP_CPU;
  opts.cuda_graph = argc > 3 ? atoi(argv[3]) : 0;
  DiaModel *model = NULL;
  if (dia_model_load(argv[1], &opts, &model) != DIA_OK) {
    fprintf(stderr, "threads: dia_model_load: %s\n", dia_last_error());
    return 1;
  }
  struct Job alone[N], together[N];
  memset(alone, 0, sizeof alone);
  memset(together, 0, sizeof together);
  for (int i = 0; i < N; i++) {
    alone[i].model = model;
    alone[i].index = i;
    generate(&alone[i]);
  }
  pthread_t threads[N];
  for (int i = 0; i < N; i++) {
    together[i].model = model;
    together[i].index = i;
    pthread_create(&threads[i], NULL, generate, &together[i]);
  }
  for (int i = 0; i < N; i++) pthread_join(threads[i], NULL);
  int rc = 0;
  for (int i = 0; i < N; i++) {
    if (alone[i].status != DIA_OK || together[i].status != DIA_OK) {
      fprintf(stderr, "threads: text %d failed: %s%s\n", i, alone[i].error, together[i].error);
      rc = 1;
    } else if (alone[i].len != together[i].len ||
               memcmp(alone[i].codes, together[i].codes, alone[i].len * sizeof(int64_t)) != 0) {
      fprintf(stderr, "threads: text %d: other codes on a thread than alone\n", i);
      rc = 1;
    }
    free(alone[i].codes);
    free(together[i].codes);
  }
  dia_model_free(model);
  if (rc == 0) printf("threads: %d threads on one model gave the codes each gives alone\n", N);
  return rc;
}
