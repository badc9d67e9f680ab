// libdia from C++: RAII handles around the pull API. Streams a script and prints what came.
//   stream BUNDLE TEXT
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dia.h"

namespace {

void check(DiaStatus status, const char *what) {
  if (status != DIA_OK) throw std::runtime_error(std::string(what) + ": " + dia_last_error());
}

struct ModelFree {
  void operator()(DiaModel *m) const { dia_model_free(m); }
};
struct StreamFree {
  void operator()(DiaStream *s) const { dia_stream_free(s); }
};

}  // namespace

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: stream BUNDLE TEXT\n");
    return 2;
  }
  try {
    DiaModel *raw_model = nullptr;
    check(dia_model_load(argv[1], nullptr, &raw_model), "dia_model_load");
    std::unique_ptr<DiaModel, ModelFree> model(raw_model);

    DiaGenerateOptions gen;
    check(dia_generate_options_init(&gen, sizeof gen), "dia_generate_options_init");
    gen.text = argv[2];
    gen.use_seed = 1;
    gen.seed = 7;
    DiaStream *raw_stream = nullptr;
    check(dia_stream_start(model.get(), &gen, &raw_stream), "dia_stream_start");
    std::unique_ptr<DiaStream, StreamFree> stream(raw_stream);

    std::vector<float> audio;
    DiaChunk chunk{};
    chunk.struct_size = sizeof chunk;
    size_t chunks = 0;
    do {
      check(dia_stream_next(stream.get(), &chunk), "dia_stream_next");
      audio.insert(audio.end(), chunk.samples, chunk.samples + chunk.n);
      chunks++;
    } while (!chunk.is_last);
    std::printf("C++: %zu chunks, %zu samples at %u Hz\n", chunks, audio.size(), chunk.sample_rate);
    return audio.empty() ? 1 : 0;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "stream: %s\n", e.what());
    return 1;
  }
}
