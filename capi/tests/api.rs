//! The C API called as C calls it (raw pointers, handles, status codes) on the tiny bundle:
//! bad input of every kind gives its status and a message, handles used after free are
//! errors, the end of a stream is never ambiguous, and threads share a model.

use std::ffi::{c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use dia::*;
use dia_run::script::{ScriptGenerator, ScriptOptions, ScriptPlan, VoicePrompt};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

/// The tiny model exported once per test binary, with the codec (`with_dac`) or without.
fn bundle(with_dac: bool) -> PathBuf {
    static BUNDLES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (dac, plain) = BUNDLES.get_or_init(|| {
        let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap()).path();
        let export = |name: &str, dac: Option<PathBuf>| {
            let out = dir.join(name);
            dia_export::export(&dia_export::ExportOptions {
                checkpoint: fixtures().join("tiny-nari"),
                out: out.clone(),
                dac,
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("export {name}: {e}"));
            out
        };
        (
            export("with-dac", Some(fixtures().join("tiny-dac"))),
            export("no-dac", None),
        )
    });
    if with_dac { dac } else { plain }.clone()
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(dia_last_error()) }
        .to_str()
        .unwrap()
        .to_string()
}

/// Asserts `status` and that the message names `needle`.
fn expect(status: DiaStatus, want: DiaStatus, needle: &str) {
    let msg = last_error();
    assert_eq!(status, want, "status {status}, message: {msg}");
    assert!(
        msg.contains(needle),
        "message {msg:?} should name {needle:?}"
    );
}

/// A model handle, freed on drop.
struct Model(*mut DiaModel);

impl Drop for Model {
    fn drop(&mut self) {
        dia_model_free(self.0);
    }
}

fn load(dir: &Path) -> Model {
    let mut opts = model_options();
    opts.execution_provider = DIA_EP_CPU;
    let path = cstr(dir.to_str().unwrap());
    let mut m = null_mut();
    let st = unsafe { dia_model_load(path.as_ptr(), &opts, &mut m) };
    assert_eq!(st, DIA_OK, "{}", last_error());
    assert!(!m.is_null());
    Model(m)
}

/// One model for the tests that need no model of their own.
fn shared() -> *mut DiaModel {
    struct Shared(Model);
    // SAFETY: a handle is an ID; the model behind it is shareable across threads (the API's
    // rule, tested below).
    unsafe impl Send for Shared {}
    unsafe impl Sync for Shared {}
    static M: OnceLock<Shared> = OnceLock::new();
    M.get_or_init(|| Shared(load(&bundle(true)))).0 .0
}

fn model_options() -> DiaModelOptions {
    let mut o = std::mem::MaybeUninit::<DiaModelOptions>::uninit();
    let st =
        unsafe { dia_model_options_init(o.as_mut_ptr(), std::mem::size_of::<DiaModelOptions>()) };
    assert_eq!(st, DIA_OK);
    unsafe { o.assume_init() }
}

/// Options for `text` with a seed; short generations keep the debug build fast.
fn gen_options(text: &CStr, seed: u64) -> DiaGenerateOptions {
    let mut o = std::mem::MaybeUninit::<DiaGenerateOptions>::uninit();
    let st = unsafe {
        dia_generate_options_init(o.as_mut_ptr(), std::mem::size_of::<DiaGenerateOptions>())
    };
    assert_eq!(st, DIA_OK);
    let mut o = unsafe { o.assume_init() };
    o.text = text.as_ptr();
    o.use_seed = 1;
    o.seed = seed;
    o.max_tokens = 60;
    o
}

fn audio_data(a: *mut DiaAudio) -> (Vec<f32>, Vec<i64>, usize) {
    let mut d = DiaAudioData {
        struct_size: std::mem::size_of::<DiaAudioData>(),
        samples: null(),
        n: 0,
        sample_rate: 0,
        codes: null(),
        frames: 0,
        channels: 0,
    };
    assert_eq!(
        unsafe { dia_audio_get(a, &mut d) },
        DIA_OK,
        "{}",
        last_error()
    );
    let samples = unsafe { std::slice::from_raw_parts(d.samples, d.n) }.to_vec();
    let codes = unsafe { std::slice::from_raw_parts(d.codes, d.frames * d.channels) }.to_vec();
    (samples, codes, d.channels)
}

fn codes_of(model: *mut DiaModel, opts: &DiaGenerateOptions) -> Vec<i64> {
    let mut a = null_mut();
    let st = unsafe { dia_generate_codes(model, opts, &mut a) };
    assert_eq!(st, DIA_OK, "{}", last_error());
    let (samples, codes, _) = audio_data(a);
    assert!(samples.is_empty());
    assert_eq!(dia_audio_free(a), DIA_OK);
    codes
}

fn new_chunk() -> DiaChunk {
    DiaChunk {
        struct_size: std::mem::size_of::<DiaChunk>(),
        samples: null(),
        n: 0,
        sample_rate: 0,
        is_last: 0,
    }
}

/// Pulls a stream to its end: the chunks' samples and is_last flags.
fn pull(stream: *mut DiaStream) -> Vec<(Vec<f32>, i32)> {
    let mut chunks = Vec::new();
    let mut c = new_chunk();
    loop {
        let st = unsafe { dia_stream_next(stream, &mut c) };
        assert_eq!(st, DIA_OK, "{}", last_error());
        chunks.push((
            unsafe { std::slice::from_raw_parts(c.samples, c.n) }.to_vec(),
            c.is_last,
        ));
        if c.is_last == 1 {
            return chunks;
        }
        assert!(chunks.len() < 10_000, "the stream never said is_last");
    }
}

#[test]
fn null_pointers_are_errors() {
    let dir = cstr(bundle(true).to_str().unwrap());
    let mut m = null_mut();
    expect(
        unsafe { dia_model_load(null(), null(), &mut m) },
        DIA_ERR_NULL_POINTER,
        "bundle_dir is NULL",
    );
    assert!(m.is_null());
    expect(
        unsafe { dia_model_load(dir.as_ptr(), null(), null_mut()) },
        DIA_ERR_NULL_POINTER,
        "out_model is NULL",
    );
    expect(
        unsafe { dia_model_options_init(null_mut(), 64) },
        DIA_ERR_NULL_POINTER,
        "options is NULL",
    );
    let model = shared();
    let text = cstr("[S1] Hi.");
    let opts = gen_options(&text, 1);
    let mut a = null_mut();
    expect(
        unsafe { dia_generate(model, null(), None, null_mut(), &mut a) },
        DIA_ERR_NULL_POINTER,
        "options is NULL",
    );
    expect(
        unsafe { dia_generate(null(), &opts, None, null_mut(), &mut a) },
        DIA_ERR_NULL_POINTER,
        "model is NULL",
    );
    let mut no_text = opts;
    no_text.text = null();
    expect(
        unsafe { dia_generate_codes(model, &no_text, &mut a) },
        DIA_ERR_NULL_POINTER,
        "options->text is NULL",
    );
    let mut no_transcript = opts;
    let voice = [0.0f32; 4410];
    no_transcript.voice_samples = voice.as_ptr();
    no_transcript.voice_n = voice.len();
    expect(
        unsafe { dia_generate_codes(model, &no_transcript, &mut a) },
        DIA_ERR_NULL_POINTER,
        "voice_transcript",
    );
    expect(
        unsafe { dia_generate_codes(model, &opts, null_mut()) },
        DIA_ERR_NULL_POINTER,
        "out_audio is NULL",
    );
    expect(
        unsafe { dia_sample_rate(model, null_mut()) },
        DIA_ERR_NULL_POINTER,
        "out_rate is NULL",
    );
    let mut s = null_mut();
    expect(
        unsafe { dia_stream_start(model, &opts, null_mut()) },
        DIA_ERR_NULL_POINTER,
        "out_stream is NULL",
    );
    assert_eq!(unsafe { dia_stream_start(model, &opts, &mut s) }, DIA_OK);
    expect(
        unsafe { dia_stream_next(s, null_mut()) },
        DIA_ERR_NULL_POINTER,
        "chunk is NULL",
    );
    expect(
        unsafe { dia_stream_next(null_mut(), &mut new_chunk()) },
        DIA_ERR_NULL_POINTER,
        "stream is NULL",
    );
    assert_eq!(dia_stream_free(s), DIA_OK);
    // free(NULL) is a no-op, as in C.
    assert_eq!(dia_stream_free(null_mut()), DIA_OK);
    assert_eq!(dia_audio_free(null_mut()), DIA_OK);
    assert_eq!(dia_model_free(null_mut()), DIA_OK);
}

#[test]
fn invalid_utf8_is_an_error() {
    let bad = CString::new(vec![b'[', b'S', b'1', b']', b' ', 0xff, b'a']).unwrap();
    let mut m = null_mut();
    expect(
        unsafe { dia_model_load(bad.as_ptr(), null(), &mut m) },
        DIA_ERR_INVALID_UTF8,
        "bundle_dir is not valid UTF-8 (invalid byte at offset 5)",
    );
    let opts = gen_options(&bad, 1);
    let mut a = null_mut();
    expect(
        unsafe { dia_generate_codes(shared(), &opts, &mut a) },
        DIA_ERR_INVALID_UTF8,
        "options->text is not valid UTF-8 (invalid byte at offset 5)",
    );
    let text = cstr("[S1] Hi.");
    let mut voiced = gen_options(&text, 1);
    let voice = [0.0f32; 4410];
    voiced.voice_samples = voice.as_ptr();
    voiced.voice_n = voice.len();
    voiced.voice_transcript = bad.as_ptr();
    expect(
        unsafe { dia_generate_codes(shared(), &voiced, &mut a) },
        DIA_ERR_INVALID_UTF8,
        "options->voice_transcript",
    );
    let mut mo = model_options();
    mo.ort_library_path = bad.as_ptr();
    let dir = cstr(bundle(true).to_str().unwrap());
    expect(
        unsafe { dia_model_load(dir.as_ptr(), &mo, &mut m) },
        DIA_ERR_INVALID_UTF8,
        "options->ort_library_path",
    );
}

#[test]
fn wrong_struct_sizes_are_errors() {
    let ours = std::mem::size_of::<DiaGenerateOptions>();
    let mut o = std::mem::MaybeUninit::<DiaGenerateOptions>::uninit();
    expect(
        unsafe { dia_generate_options_init(o.as_mut_ptr(), 8) },
        DIA_ERR_STRUCT_SIZE,
        "options.struct_size is 8",
    );
    let text = cstr("[S1] Hi.");
    let model = shared();
    let mut a = null_mut();
    for bad in [
        0,
        8,
        ours - 1,
        DIA_MAX_STRUCT_SIZE + 1,
        usize::MAX,
        0xdead_beef,
    ] {
        let mut opts = gen_options(&text, 1);
        opts.struct_size = bad;
        expect(
            unsafe { dia_generate_codes(model, &opts, &mut a) },
            DIA_ERR_STRUCT_SIZE,
            &format!("options.struct_size is {bad}"),
        );
        assert!(a.is_null());
    }
    let mut mo = model_options();
    mo.struct_size = 4;
    let dir = cstr(bundle(true).to_str().unwrap());
    let mut m = null_mut();
    expect(
        unsafe { dia_model_load(dir.as_ptr(), &mo, &mut m) },
        DIA_ERR_STRUCT_SIZE,
        "options.struct_size is 4",
    );

    // A caller built against a newer header: a larger struct is fine while the fields this
    // library does not know are 0, and an error once one is set.
    #[repr(C)]
    struct Newer {
        known: DiaGenerateOptions,
        newer_field: u64,
    }
    let mut newer = std::mem::MaybeUninit::<Newer>::uninit();
    let size = std::mem::size_of::<Newer>();
    let st = unsafe { dia_generate_options_init(newer.as_mut_ptr().cast(), size) };
    assert_eq!(st, DIA_OK);
    let mut newer = unsafe { newer.assume_init() };
    assert_eq!(newer.known.struct_size, size);
    assert_eq!(newer.newer_field, 0, "init zeroes what it does not know");
    newer.known.text = text.as_ptr();
    newer.known.use_seed = 1;
    newer.known.max_tokens = 60;
    let ptr = &newer as *const Newer as *const DiaGenerateOptions;
    let codes = {
        let st = unsafe { dia_generate_codes(model, ptr, &mut a) };
        assert_eq!(st, DIA_OK, "{}", last_error());
        let (_, codes, _) = audio_data(a);
        dia_audio_free(a);
        codes
    };
    assert_eq!(codes, codes_of(model, &gen_options(&text, 0)));
    newer.newer_field = 1;
    let ptr = &newer as *const Newer as *const DiaGenerateOptions;
    expect(
        unsafe { dia_generate_codes(model, ptr, &mut a) },
        DIA_ERR_STRUCT_SIZE,
        "sets fields beyond",
    );

    // An output struct with a bad size is refused before any work: no chunk is lost.
    let opts = gen_options(&text, 1);
    let mut s = null_mut();
    assert_eq!(unsafe { dia_stream_start(model, &opts, &mut s) }, DIA_OK);
    let mut c = new_chunk();
    c.struct_size = 0;
    expect(
        unsafe { dia_stream_next(s, &mut c) },
        DIA_ERR_STRUCT_SIZE,
        "chunk.struct_size is 0",
    );
    let chunks = pull(s);
    dia_stream_free(s);
    let mut whole = null_mut();
    let st = unsafe { dia_generate(model, &opts, None, null_mut(), &mut whole) };
    assert_eq!(st, DIA_OK, "{}", last_error());
    let (samples, _, _) = audio_data(whole);
    dia_audio_free(whole);
    assert_eq!(chunks.concat_samples(), samples);
}

trait Concat {
    fn concat_samples(&self) -> Vec<f32>;
}

impl Concat for Vec<(Vec<f32>, i32)> {
    fn concat_samples(&self) -> Vec<f32> {
        self.iter().flat_map(|(s, _)| s.iter().copied()).collect()
    }
}

#[test]
fn handles_used_after_free_are_errors() {
    let text = cstr("[S1] Hi.");
    let opts = gen_options(&text, 1);
    let m = load(&bundle(true));
    let model = m.0;
    let mut rate = 0;
    assert_eq!(unsafe { dia_sample_rate(model, &mut rate) }, DIA_OK);
    assert_eq!(rate, 44100);

    // A stream keeps its model alive after the model's handle is freed.
    let mut s = null_mut();
    assert_eq!(unsafe { dia_stream_start(model, &opts, &mut s) }, DIA_OK);
    let mut a = null_mut();
    assert_eq!(unsafe { dia_generate_codes(model, &opts, &mut a) }, DIA_OK);
    std::mem::forget(m);
    let mut unused = null_mut();
    assert_eq!(dia_model_free(model), DIA_OK);
    expect(
        dia_model_free(model),
        DIA_ERR_INVALID_HANDLE,
        "not a live model handle",
    );
    expect(
        unsafe { dia_sample_rate(model, &mut rate) },
        DIA_ERR_INVALID_HANDLE,
        "model is not a live model handle",
    );
    expect(
        unsafe { dia_generate_codes(model, &opts, &mut unused) },
        DIA_ERR_INVALID_HANDLE,
        "model",
    );
    let chunks = pull(s);
    assert_eq!(chunks.last().unwrap().1, 1);

    // A handle of one kind is no handle of another.
    expect(
        unsafe { dia_stream_next(a.cast(), &mut new_chunk()) },
        DIA_ERR_INVALID_HANDLE,
        "stream is not a live stream handle",
    );
    expect(dia_model_free(s.cast()), DIA_ERR_INVALID_HANDLE, "model");

    assert_eq!(dia_stream_free(s), DIA_OK);
    expect(
        unsafe { dia_stream_next(s, &mut new_chunk()) },
        DIA_ERR_INVALID_HANDLE,
        "stream is not a live stream handle",
    );
    expect(dia_stream_free(s), DIA_ERR_INVALID_HANDLE, "stream");

    assert_eq!(dia_audio_free(a), DIA_OK);
    let mut d = DiaAudioData {
        struct_size: std::mem::size_of::<DiaAudioData>(),
        samples: null(),
        n: 0,
        sample_rate: 0,
        codes: null(),
        frames: 0,
        channels: 0,
    };
    expect(
        unsafe { dia_audio_get(a, &mut d) },
        DIA_ERR_INVALID_HANDLE,
        "audio is not a live audio handle",
    );
    expect(dia_audio_free(a), DIA_ERR_INVALID_HANDLE, "audio");

    // Made-up values: never dereferenced.
    for fake in [0x10usize, 0xdead_beef, usize::MAX] {
        let h: *mut DiaModel = std::ptr::without_provenance_mut(fake);
        expect(
            unsafe { dia_sample_rate(h, &mut rate) },
            DIA_ERR_INVALID_HANDLE,
            "model",
        );
    }
}

extern "C" fn stop_at_once(
    _samples: *const f32,
    _n: usize,
    _p: *const DiaProgress,
    calls: *mut c_void,
) -> i32 {
    unsafe { *(calls as *mut usize) += 1 };
    0
}

#[test]
fn stopping_from_the_callback_returns_stopped_and_no_audio() {
    let text = cstr("[S1] Hi.");
    let opts = gen_options(&text, 1);
    let mut calls = 0usize;
    // A stale value must not survive: the out-handle is NULL after the call.
    let mut a: *mut DiaAudio = std::ptr::without_provenance_mut(0x1234_5670);
    let st = unsafe {
        dia_generate(
            shared(),
            &opts,
            Some(stop_at_once),
            &mut calls as *mut usize as *mut c_void,
            &mut a,
        )
    };
    expect(st, DIA_ERR_STOPPED, "stopped: the callback returned 0");
    assert!(a.is_null());
    assert_eq!(calls, 1);
}

struct Pushed {
    samples: Vec<f32>,
    last: Vec<i32>,
    progress_samples: Vec<usize>,
}

extern "C" fn collect(
    samples: *const f32,
    n: usize,
    p: *const DiaProgress,
    user: *mut c_void,
) -> i32 {
    let pushed = unsafe { &mut *(user as *mut Pushed) };
    let p = unsafe { &*p };
    assert_eq!(p.struct_size, std::mem::size_of::<DiaProgress>());
    pushed
        .samples
        .extend_from_slice(unsafe { std::slice::from_raw_parts(samples, n) });
    pushed.last.push(p.is_last);
    pushed.progress_samples.push(p.samples);
    1
}

#[test]
fn the_last_samples_come_with_is_last_and_push_equals_pull() {
    let text = cstr("[S1] Hello there. [S2] Hi!");
    let mut opts = gen_options(&text, 5);
    opts.max_tokens = 0;
    let model = shared();
    let mut pushed = Pushed {
        samples: Vec::new(),
        last: Vec::new(),
        progress_samples: Vec::new(),
    };
    let mut a = null_mut();
    let st = unsafe {
        dia_generate(
            model,
            &opts,
            Some(collect),
            &mut pushed as *mut Pushed as *mut c_void,
            &mut a,
        )
    };
    assert_eq!(st, DIA_OK, "{}", last_error());
    let (samples, codes, channels) = audio_data(a);
    dia_audio_free(a);
    assert_eq!(channels, 9);
    assert!(pushed.last.len() > 2, "several chunks");
    assert_eq!(pushed.last.iter().filter(|&&l| l == 1).count(), 1);
    assert_eq!(*pushed.last.last().unwrap(), 1, "the last call says so");
    assert_eq!(*pushed.progress_samples.last().unwrap(), samples.len());
    assert_eq!(pushed.samples, samples);

    let mut s = null_mut();
    assert_eq!(unsafe { dia_stream_start(model, &opts, &mut s) }, DIA_OK);
    let mut got = DiaCodes {
        struct_size: std::mem::size_of::<DiaCodes>(),
        codes: null(),
        frames: 0,
        channels: 0,
    };
    expect(
        unsafe { dia_stream_codes(s, &mut got) },
        DIA_ERR_INVALID_ARGUMENT,
        "not finished",
    );
    let chunks = pull(s);
    let (last, rest) = chunks.split_last().unwrap();
    assert!(
        !last.0.is_empty(),
        "the last chunk carries the last samples"
    );
    assert!(rest.iter().all(|(_, l)| *l == 0));
    assert_eq!(chunks.concat_samples(), samples);
    let mut c = new_chunk();
    expect(
        unsafe { dia_stream_next(s, &mut c) },
        DIA_ERR_STREAM_ENDED,
        "the stream has ended",
    );
    assert_eq!(unsafe { dia_stream_codes(s, &mut got) }, DIA_OK);
    let pulled = unsafe { std::slice::from_raw_parts(got.codes, got.frames * got.channels) };
    assert_eq!(pulled, codes.as_slice());
    dia_stream_free(s);
    assert_eq!(codes, codes_of(model, &opts));
}

/// What `dia-run` does for the same options (its `main.rs`): the plan, the voice, the seed.
fn cli_codes(
    model: &dia_run::DiaModel,
    text: &str,
    seed: u64,
    voice: Option<(&[f32], u32, &str)>,
) -> Vec<i64> {
    let voice = voice.map(|(samples, rate, transcript)| VoicePrompt {
        codes: model
            .encode_audio(&dia_run::audio::resample(samples, rate, model.sample_rate()).unwrap())
            .unwrap(),
        transcript: transcript.to_string(),
    });
    let opts = dia_run::GenerateOptions {
        max_tokens: None,
        seed: Some(seed),
        ..Default::default()
    };
    let sopts = ScriptOptions::default();
    let plan = ScriptPlan::new(model, text, voice.as_ref(), &opts, &sopts).unwrap();
    let mut g = ScriptGenerator::new(model, plan, voice, &opts).unwrap();
    while !g.is_done() {
        g.step().unwrap();
    }
    g.finish().generation.codes.data
}

#[test]
fn codes_and_voice_prompts_are_the_clis() {
    let rust = dia_run::DiaModel::load(
        &bundle(true),
        &dia_run::ModelOptions {
            provider: dia_run::ExecutionProvider::Cpu,
            ..Default::default()
        },
    )
    .unwrap();
    let model = shared();
    let script = "[S1] A script long enough to be split. It goes on. [S2] And on.";
    let text = cstr(script);
    // The bundle's whole budget (256 steps), as dia-run without --max-tokens.
    let gen = |seed| DiaGenerateOptions {
        max_tokens: 0,
        ..gen_options(&text, seed)
    };
    assert_eq!(
        codes_of(model, &gen(11)),
        cli_codes(&rust, script, 11, None)
    );

    // A voice prompt from a file at 22.05 kHz or so, as dia-run reads it; and the same
    // voice as two identical channels, which the mix-down makes the same mono.
    let (voice, rate) =
        dia_run::audio::read_audio_mono(&fixtures().join("prompts/source.wav")).unwrap();
    let transcript = "[S1] The prompt.";
    let t = cstr(transcript);
    let mut opts = gen(12);
    opts.voice_samples = voice.as_ptr();
    opts.voice_n = voice.len();
    opts.voice_sample_rate = rate;
    opts.voice_transcript = t.as_ptr();
    let want = cli_codes(&rust, script, 12, Some((&voice, rate, transcript)));
    assert_eq!(codes_of(model, &opts), want);
    let stereo: Vec<f32> = voice.iter().flat_map(|&v| [v, v]).collect();
    opts.voice_samples = stereo.as_ptr();
    opts.voice_channels = 2;
    assert_eq!(codes_of(model, &opts), want);

    // A count no memory holds is refused before the samples are touched.
    let mut huge = opts;
    huge.voice_n = usize::MAX / 2;
    expect(
        unsafe { dia_generate_codes(model, &huge, &mut null_mut()) },
        DIA_ERR_INVALID_ARGUMENT,
        "more samples than memory holds",
    );
    opts.voice_sample_rate = 10;
    expect(
        unsafe { dia_generate_codes(model, &opts, &mut null_mut()) },
        DIA_ERR_INVALID_ARGUMENT,
        "10 Hz is outside",
    );
}

#[test]
fn bad_options_say_which() {
    let text = cstr("[S1] Hi.");
    let model = shared();
    let mut a = null_mut();
    let mut o = gen_options(&text, 1);
    o.temperature = -1.0;
    expect(
        unsafe { dia_generate_codes(model, &o, &mut a) },
        DIA_ERR_INVALID_ARGUMENT,
        "temperature",
    );
    let mut o = gen_options(&text, 1);
    o.top_p = 0.0;
    expect(
        unsafe { dia_generate_codes(model, &o, &mut a) },
        DIA_ERR_INVALID_ARGUMENT,
        "top-p",
    );
    let mut o = gen_options(&text, 1);
    o.chunk_frames = 0;
    expect(
        unsafe { dia_generate(model, &o, None, null_mut(), &mut a) },
        DIA_ERR_INVALID_ARGUMENT,
        "chunk_frames (0)",
    );
    let o = gen_options(&text, 1);
    expect(
        unsafe { dia_generate(model, &o, None, null_mut(), null_mut()) },
        DIA_ERR_INVALID_ARGUMENT,
        "callback and out_audio are both NULL",
    );
    let empty = cstr("   ");
    expect(
        unsafe { dia_generate_codes(model, &gen_options(&empty, 1), &mut a) },
        DIA_ERR_INVALID_ARGUMENT,
        "the text is empty",
    );
    let dir = cstr(bundle(true).to_str().unwrap());
    let mut m = null_mut();
    for (field, set) in [
        (
            "execution_provider 9",
            (|o: &mut DiaModelOptions| o.execution_provider = 9) as fn(&mut _),
        ),
        ("coreml_units -1", |o| o.coreml_units = -1),
        ("threads is -2", |o| o.threads = -2),
        ("device_id is -1", |o| o.device_id = -1),
    ] {
        let mut mo = model_options();
        set(&mut mo);
        expect(
            unsafe { dia_model_load(dir.as_ptr(), &mo, &mut m) },
            DIA_ERR_INVALID_ARGUMENT,
            field,
        );
        assert!(m.is_null());
    }
}

#[test]
fn a_bad_bundle_path_says_what_is_wrong() {
    let mut m = null_mut();
    let missing = cstr("/no/such/bundle");
    expect(
        unsafe { dia_model_load(missing.as_ptr(), null(), &mut m) },
        DIA_ERR_LOAD,
        "the bundle directory /no/such/bundle does not exist",
    );
    let empty = tempfile::tempdir().unwrap();
    let p = cstr(empty.path().to_str().unwrap());
    expect(
        unsafe { dia_model_load(p.as_ptr(), null(), &mut m) },
        DIA_ERR_LOAD,
        "manifest.json",
    );
    assert!(m.is_null());
}

#[test]
fn a_bundle_without_codec_gives_codes_but_no_audio() {
    let m = load(&bundle(false));
    let text = cstr("[S1] Hi.");
    let opts = gen_options(&text, 3);
    let mut a = null_mut();
    expect(
        unsafe { dia_generate(m.0, &opts, None, null_mut(), &mut a) },
        DIA_ERR_NO_CODEC,
        "has no DAC codec",
    );
    let mut s = null_mut();
    expect(
        unsafe { dia_stream_start(m.0, &opts, &mut s) },
        DIA_ERR_NO_CODEC,
        "has no DAC codec",
    );
    assert!(s.is_null());
    assert_eq!(codes_of(m.0, &opts), codes_of(shared(), &opts));
}

#[test]
fn threads_share_a_model_and_get_a_single_threads_codes() {
    let model = shared() as usize;
    let texts = ["[S1] One.", "[S2] Two, too.", "[S1] Three! (laughs)"];
    let alone: Vec<Vec<i64>> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| codes_of(model as *mut _, &gen_options(&cstr(t), i as u64)))
        .collect();
    // Several rounds, so that the threads' steps interleave on the session.
    for _ in 0..2 {
        let together: Vec<Vec<i64>> = std::thread::scope(|s| {
            let hs: Vec<_> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    s.spawn(move || {
                        let text = cstr(t);
                        let opts = gen_options(&text, i as u64);
                        if i == 0 {
                            // One of them through a stream, pulled on its own thread.
                            let mut st = null_mut();
                            assert_eq!(
                                unsafe { dia_stream_start(model as *mut _, &opts, &mut st) },
                                DIA_OK
                            );
                            pull(st);
                            let mut got = DiaCodes {
                                struct_size: std::mem::size_of::<DiaCodes>(),
                                codes: null(),
                                frames: 0,
                                channels: 0,
                            };
                            assert_eq!(unsafe { dia_stream_codes(st, &mut got) }, DIA_OK);
                            let c = unsafe {
                                std::slice::from_raw_parts(got.codes, got.frames * got.channels)
                            }
                            .to_vec();
                            dia_stream_free(st);
                            c
                        } else {
                            codes_of(model as *mut _, &opts)
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(together, alone);
    }
}

#[test]
fn a_stream_moves_between_threads_and_errors_are_per_thread() {
    let text = cstr("[S1] Hello there. [S2] Hi!");
    let opts = DiaGenerateOptions {
        max_tokens: 0,
        ..gen_options(&text, 4)
    };
    let mut s = null_mut();
    assert_eq!(unsafe { dia_stream_start(shared(), &opts, &mut s) }, DIA_OK);
    let id = s as usize;
    let mut c = new_chunk();
    assert_eq!(unsafe { dia_stream_next(s, &mut c) }, DIA_OK);
    assert_eq!(c.is_last, 0, "more chunks to pull on the other thread");
    let rest = std::thread::spawn(move || {
        // No error happened on this thread yet, whatever other threads did.
        let before = last_error();
        let chunks = pull(id as *mut DiaStream);
        (before, chunks)
    });
    let mut m = null_mut();
    let missing = cstr("/no/such/bundle");
    unsafe { dia_model_load(missing.as_ptr(), null(), &mut m) };
    let (before, chunks) = rest.join().unwrap();
    assert_eq!(before, "");
    assert_eq!(chunks.last().unwrap().1, 1);
    assert!(last_error().contains("/no/such/bundle"));
    dia_stream_free(s);
}

#[test]
fn the_onnxruntime_in_the_process_is_found_by_name() {
    // Once a model is loaded, the library it loaded is what a later search finds first.
    shared();
    let loaded = dia_run::onnxruntime::library_path().expect("loaded");
    let found = dia_run::onnxruntime::loaded_in_process().expect("found without loading");
    assert_eq!(
        std::fs::canonicalize(found).unwrap(),
        std::fs::canonicalize(loaded).unwrap()
    );
}

#[test]
fn load_warnings_are_there_to_read() {
    // ONNX Runtime is loaded already (by the shared model): a path asked for now is not used,
    // and the model says so.
    shared();
    let dir = bundle(true);
    let other = cstr(dir.join("manifest.json").to_str().unwrap());
    let mut mo = model_options();
    mo.execution_provider = DIA_EP_CPU;
    mo.ort_library_path = other.as_ptr();
    let p = cstr(dir.to_str().unwrap());
    let mut m = null_mut();
    assert_eq!(
        unsafe { dia_model_load(p.as_ptr(), &mo, &mut m) },
        DIA_OK,
        "{}",
        last_error()
    );
    let mut n = 0;
    assert_eq!(unsafe { dia_model_warning_count(m, &mut n) }, DIA_OK);
    assert_eq!(n, 1);
    let mut msg = null();
    assert_eq!(unsafe { dia_model_warning(m, 0, &mut msg) }, DIA_OK);
    let msg = unsafe { CStr::from_ptr(msg) }.to_str().unwrap();
    assert!(
        msg.contains("already loaded") && msg.contains("manifest.json is not used"),
        "{msg}"
    );
    let mut unused = null();
    expect(
        unsafe { dia_model_warning(m, 1, &mut unused) },
        DIA_ERR_INVALID_ARGUMENT,
        "warning index 1 is past the model's 1 warnings",
    );
    // The default load has none.
    assert_eq!(unsafe { dia_model_warning_count(shared(), &mut n) }, DIA_OK);
    assert_eq!(n, 0);
    let mut ep = -1;
    assert_eq!(unsafe { dia_model_provider(m, &mut ep) }, DIA_OK);
    assert_eq!(ep, DIA_EP_CPU);
    expect(
        unsafe { dia_model_provider(m, null_mut()) },
        DIA_ERR_NULL_POINTER,
        "out_provider is NULL",
    );
    assert_eq!(dia_model_free(m), DIA_OK);
    expect(
        unsafe { dia_model_warning_count(m, &mut n) },
        DIA_ERR_INVALID_HANDLE,
        "model",
    );
}

#[test]
fn a_stream_in_use_by_another_thread_is_busy() {
    // A first chunk of 200 frames: its dia_stream_next runs the encoder and ~200 steps, long
    // enough for the other thread to find the stream in use.
    let text = cstr("[S1] Hello there. [S2] Hi!");
    let opts = DiaGenerateOptions {
        max_tokens: 0,
        first_chunk_frames: 200,
        ..gen_options(&text, 6)
    };
    let mut s = null_mut();
    assert_eq!(unsafe { dia_stream_start(shared(), &opts, &mut s) }, DIA_OK);
    let id = s as usize;
    let done = std::sync::atomic::AtomicBool::new(false);
    let statuses = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut c = new_chunk();
            let st = unsafe { dia_stream_next(id as *mut DiaStream, &mut c) };
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            assert_eq!(st, DIA_OK, "{}", last_error());
        });
        let mut seen = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let mut got = DiaCodes {
                struct_size: std::mem::size_of::<DiaCodes>(),
                codes: null(),
                frames: 0,
                channels: 0,
            };
            let st = unsafe { dia_stream_codes(id as *const DiaStream, &mut got) };
            if st == DIA_ERR_BUSY {
                assert!(last_error().contains("in use by another thread"));
            }
            seen.push(st);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        seen
    });
    assert!(statuses.contains(&DIA_ERR_BUSY), "{statuses:?}");
    // Before or after the other thread held it: not finished, which is no harm.
    assert!(statuses
        .iter()
        .all(|&s| s == DIA_ERR_BUSY || s == DIA_ERR_INVALID_ARGUMENT));
    // And it goes on after.
    let chunks = pull(s);
    assert_eq!(chunks.last().unwrap().1, 1);
    dia_stream_free(s);
}

#[test]
fn a_provider_that_cannot_load_falls_back_to_the_cpu_and_says_why() {
    // This ONNX Runtime (the CPU wheel's) has no CUDA provider.
    let dir = cstr(bundle(true).to_str().unwrap());
    let mut mo = model_options();
    mo.execution_provider = DIA_EP_CUDA;
    mo.device_id = 1;
    let mut m = null_mut();
    assert_eq!(
        unsafe { dia_model_load(dir.as_ptr(), &mo, &mut m) },
        DIA_OK,
        "{}",
        last_error()
    );
    let mut ep = -1;
    assert_eq!(unsafe { dia_model_provider(m, &mut ep) }, DIA_OK);
    assert_eq!(ep, DIA_EP_CPU);
    let mut n = 0;
    assert_eq!(unsafe { dia_model_warning_count(m, &mut n) }, DIA_OK);
    let warnings: Vec<String> = (0..n)
        .map(|i| {
            let mut msg = null();
            assert_eq!(unsafe { dia_model_warning(m, i, &mut msg) }, DIA_OK);
            unsafe { CStr::from_ptr(msg) }.to_str().unwrap().to_string()
        })
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("cuda execution provider could not be loaded")),
        "{warnings:?}"
    );
    // And it generates there, as on the CPU.
    let text = cstr("[S1] Hi.");
    let opts = gen_options(&text, 2);
    assert_eq!(codes_of(m, &opts), codes_of(shared(), &opts));
    assert_eq!(dia_model_free(m), DIA_OK);
}
