#!/usr/bin/env python3
"""libdia from Python with ctypes only (no numpy, no build step).

Generates a script with the push API (a callback per chunk; writes OUT.wav and OUT-push.npy)
and again with the pull API (writes OUT-pull.npy), same seed, and checks both gave the same
codes. The .npy files are written as `dia-run --save-codes` writes them.

    python3 capi/examples/speak.py --lib TARGET/debug/libdia.so BUNDLE "[S1] Hello." OUT [--seed 7]
"""

import argparse
import ctypes
import ctypes.util
import os
import struct
import sys
import wave

c_size_t = ctypes.c_size_t

# Status codes and constants of dia.h.
DIA_OK = 0
DIA_ERR_STREAM_ENDED = 10
DIA_EP_CPU = 1


class DiaModelOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("execution_provider", ctypes.c_int32),
        ("device_id", ctypes.c_int32),
        ("cuda_graph", ctypes.c_int32),
        ("threads", ctypes.c_int32),
        ("coreml_units", ctypes.c_int32),
        ("ort_library_path", ctypes.c_char_p),
    ]


class DiaGenerateOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("text", ctypes.c_char_p),
        ("max_tokens", c_size_t),
        ("cfg_scale", ctypes.c_float),
        ("temperature", ctypes.c_float),
        ("top_p", ctypes.c_float),
        ("cfg_filter_top_k", ctypes.c_uint32),
        ("use_seed", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("voice_samples", ctypes.POINTER(ctypes.c_float)),
        ("voice_n", c_size_t),
        ("voice_channels", ctypes.c_uint32),
        ("voice_sample_rate", ctypes.c_uint32),
        ("voice_transcript", ctypes.c_char_p),
        ("carry", ctypes.c_int32),
        ("crossfade_ms", ctypes.c_float),
        ("first_chunk_frames", ctypes.c_uint32),
        ("chunk_frames", ctypes.c_uint32),
    ]


class DiaProgress(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("segment", c_size_t),
        ("segments", c_size_t),
        ("frames", c_size_t),
        ("estimated_frames", c_size_t),
        ("steps", c_size_t),
        ("samples", c_size_t),
        ("elapsed_s", ctypes.c_double),
        ("is_last", ctypes.c_int32),
    ]


class DiaChunk(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("samples", ctypes.POINTER(ctypes.c_float)),
        ("n", c_size_t),
        ("sample_rate", ctypes.c_uint32),
        ("is_last", ctypes.c_int32),
    ]


class DiaAudioData(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("samples", ctypes.POINTER(ctypes.c_float)),
        ("n", c_size_t),
        ("sample_rate", ctypes.c_uint32),
        ("codes", ctypes.POINTER(ctypes.c_int64)),
        ("frames", c_size_t),
        ("channels", c_size_t),
    ]


class DiaCodes(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("codes", ctypes.POINTER(ctypes.c_int64)),
        ("frames", c_size_t),
        ("channels", c_size_t),
    ]


CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int32,
    ctypes.POINTER(ctypes.c_float),
    c_size_t,
    ctypes.POINTER(DiaProgress),
    ctypes.c_void_p,
)


def load_library(path):
    lib = ctypes.CDLL(path)
    P = ctypes.POINTER
    handle = ctypes.c_void_p
    sigs = {
        "dia_version": ([], ctypes.c_char_p),
        "dia_last_error": ([], ctypes.c_char_p),
        "dia_model_options_init": ([P(DiaModelOptions), c_size_t], ctypes.c_int32),
        "dia_generate_options_init": ([P(DiaGenerateOptions), c_size_t], ctypes.c_int32),
        "dia_model_load": ([ctypes.c_char_p, P(DiaModelOptions), P(handle)], ctypes.c_int32),
        "dia_model_free": ([handle], ctypes.c_int32),
        "dia_sample_rate": ([handle, P(ctypes.c_uint32)], ctypes.c_int32),
        "dia_generate": (
            [handle, P(DiaGenerateOptions), CALLBACK, ctypes.c_void_p, P(handle)],
            ctypes.c_int32,
        ),
        "dia_audio_get": ([handle, P(DiaAudioData)], ctypes.c_int32),
        "dia_audio_free": ([handle], ctypes.c_int32),
        "dia_stream_start": ([handle, P(DiaGenerateOptions), P(handle)], ctypes.c_int32),
        "dia_stream_next": ([handle, P(DiaChunk)], ctypes.c_int32),
        "dia_stream_codes": ([handle, P(DiaCodes)], ctypes.c_int32),
        "dia_stream_free": ([handle], ctypes.c_int32),
    }
    for name, (args, res) in sigs.items():
        f = getattr(lib, name)
        f.argtypes = args
        f.restype = res
    return lib


class DiaError(Exception):
    pass


def check(lib, status, what):
    if status != DIA_OK:
        raise DiaError(f"{what} failed (status {status}): {lib.dia_last_error().decode()}")


def write_npy(path, codes, frames, channels):
    """int64 [frames, channels], the header padded to 64 bytes as numpy (and dia-run) do."""
    header = f"{{'descr': '<i8', 'fortran_order': False, 'shape': ({frames}, {channels}), }}"
    pad = (64 - (10 + len(header) + 1) % 64) % 64
    header = header + " " * pad + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack(f"<{len(codes)}q", *codes))


def write_wav(path, samples, rate):
    """16-bit PCM mono."""
    pcm = [int(max(-1.0, min(1.0, s)) * 32767.0) for s in samples]
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(pcm)}h", *pcm))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", default=os.environ.get("DIA_LIBRARY") or ctypes.util.find_library("dia"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("bundle")
    ap.add_argument("text")
    ap.add_argument("out")
    args = ap.parse_args()
    if not args.lib:
        sys.exit("speak.py: libdia not found: give --lib PATH or set DIA_LIBRARY")
    lib = load_library(args.lib)
    print(f"libdia {lib.dia_version().decode()}")

    mopts = DiaModelOptions()
    check(lib, lib.dia_model_options_init(ctypes.byref(mopts), ctypes.sizeof(mopts)), "options")
    mopts.execution_provider = DIA_EP_CPU
    model = ctypes.c_void_p()
    check(lib, lib.dia_model_load(args.bundle.encode(), ctypes.byref(mopts), ctypes.byref(model)), "dia_model_load")
    try:
        gen = DiaGenerateOptions()
        check(lib, lib.dia_generate_options_init(ctypes.byref(gen), ctypes.sizeof(gen)), "options")
        text = args.text.encode()  # kept alive while gen points to it
        gen.text = text
        gen.use_seed = 1
        gen.seed = args.seed
        gen.max_tokens = args.max_tokens

        # Push: the callback receives every chunk as it is decoded.
        pushed = []
        last = []

        def on_chunk(samples, n, progress, _user):
            pushed.extend(samples[:n])
            last.append(progress.contents.is_last)
            return 1

        cb = CALLBACK(on_chunk)  # kept alive during the call
        audio = ctypes.c_void_p()
        check(lib, lib.dia_generate(model, ctypes.byref(gen), cb, None, ctypes.byref(audio)), "dia_generate")
        try:
            data = DiaAudioData(struct_size=ctypes.sizeof(DiaAudioData))
            check(lib, lib.dia_audio_get(audio, ctypes.byref(data)), "dia_audio_get")
            samples = data.samples[: data.n]
            codes = data.codes[: data.frames * data.channels]
            frames, channels, rate = data.frames, data.channels, data.sample_rate
        finally:
            check(lib, lib.dia_audio_free(audio), "dia_audio_free")
        if pushed != samples or last[-1] != 1 or any(last[:-1]):
            raise DiaError("the callback's chunks are not the result's samples, or is_last is wrong")
        write_wav(args.out + ".wav", samples, rate)
        write_npy(args.out + "-push.npy", codes, frames, channels)
        print(f"push: {len(last)} chunks, {len(samples)} samples at {rate} Hz, {frames} frames of codes")

        # Pull: chunks until the one with is_last = 1, which carries the last samples.
        stream = ctypes.c_void_p()
        check(lib, lib.dia_stream_start(model, ctypes.byref(gen), ctypes.byref(stream)), "dia_stream_start")
        try:
            chunk = DiaChunk(struct_size=ctypes.sizeof(DiaChunk))
            pulled = []
            while True:
                check(lib, lib.dia_stream_next(stream, ctypes.byref(chunk)), "dia_stream_next")
                pulled.extend(chunk.samples[: chunk.n])
                if chunk.is_last:
                    break
            if lib.dia_stream_next(stream, ctypes.byref(chunk)) != DIA_ERR_STREAM_ENDED:
                raise DiaError("a call after the last chunk should say DIA_ERR_STREAM_ENDED")
            got = DiaCodes(struct_size=ctypes.sizeof(DiaCodes))
            check(lib, lib.dia_stream_codes(stream, ctypes.byref(got)), "dia_stream_codes")
            pulled_codes = got.codes[: got.frames * got.channels]
            write_npy(args.out + "-pull.npy", pulled_codes, got.frames, got.channels)
        finally:
            check(lib, lib.dia_stream_free(stream), "dia_stream_free")
        print(f"pull: {len(pulled)} samples")
        if pulled_codes != codes or pulled != samples:
            raise DiaError("the pull API gave other audio or codes than the push API")
    finally:
        check(lib, lib.dia_model_free(model), "dia_model_free")


if __name__ == "__main__":
    try:
        main()
    except DiaError as e:
        sys.exit(f"speak.py: {e}")
