//! dia-run end to end with the codec: text -> WAV (16-bit and float), and voice prompts from
//! WAV files at other rates and channel counts.

use std::fs;
use std::path::Path;

use dia_run::audio::{read_audio_mono, resample, write_wav, WavFormat};
use dia_run::{DiaModel, GenerateOptions, ModelOptions};
use dia_tests::dac::dac_bundle;
use dia_tests::{dia_run, scratch, stderr};
use ndarray::{Array2, Array3};
use ndarray_npy::read_npy;

fn codes_of(path: &Path) -> dia_run::delay::Frames {
    let a: Array2<i64> = read_npy(path).unwrap();
    dia_run::delay::Frames {
        channels: a.ncols(),
        data: a.iter().cloned().collect(),
    }
}

#[test]
fn text_to_wav_16_bit_and_float() {
    let b = dac_bundle("tiny-dac");
    let model = DiaModel::load(&b, &ModelOptions::default()).unwrap();
    // 16-bit: rounding plus the 1/32767 (write) vs 1/32768 (read) scale; measured 4.1e-5
    // (16-bit, bound 6.1e-5) and 0 (float).
    for (flag, tol) in [(None, 2.0 / 32767.0), (Some("--float"), 0.0)] {
        let wav = scratch().join(format!("speech{}.wav", flag.unwrap_or("")));
        let codes = scratch().join(format!("speech{}.npy", flag.unwrap_or("")));
        let mut args = vec![
            "--text",
            "[S1] Hello there. [S2] Hi!",
            "--seed",
            "3",
            "--max-tokens",
            "80",
            "--out",
            wav.to_str().unwrap(),
            "--save-codes",
            codes.to_str().unwrap(),
            "--quiet",
        ];
        args.extend(flag);
        let o = dia_run(&b, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        let reader = hound::WavReader::open(&wav).unwrap();
        let spec = reader.spec();
        assert_eq!((spec.channels, spec.sample_rate), (1, 44100));
        assert_eq!(spec.bits_per_sample, if flag.is_some() { 32 } else { 16 });
        // The WAV holds the codec's decoding of the saved codes, frame for frame.
        let frames = codes_of(&codes);
        let want = model.decode_audio(&frames).unwrap();
        let (got, _) = read_audio_mono(&wav).unwrap();
        assert_eq!(got.len(), frames.len() * 512);
        let err = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b.clamp(-1.0, 1.0)).abs()));
        eprintln!("{flag:?}: WAV vs decoded codes: max error {err:e}");
        assert!(err <= tol + 1e-7, "{flag:?}: {err}");
        let leftovers: Vec<_> = fs::read_dir(scratch())
            .unwrap()
            .filter_map(|e| e.ok())
            // This run's files only: other tests write in the same scratch directory at once.
            .filter(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.contains(".tmp-") && n.starts_with(".speech")
            })
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn voice_prompt_codes_come_from_the_codec() {
    // The fixture waveform through the runtime's codec path gives the reference's codes.
    let b = dac_bundle("tiny-dac");
    let model = DiaModel::load(&b, &ModelOptions::default()).unwrap();
    let dir = dia_tests::fixtures().join("reference").join("dac");
    let wave: Array3<f32> = read_npy(dir.join("wave.npy")).unwrap();
    let want: Array3<i64> = read_npy(dir.join("wave_codes.npy")).unwrap();
    let samples: Vec<f32> = wave.iter().cloned().collect();
    let got = model.encode_audio(&samples).unwrap();
    let (c, frames) = (want.shape()[1], want.shape()[2]);
    assert_eq!((got.channels, got.len()), (c, frames));
    for t in 0..frames {
        for ch in 0..c {
            assert_eq!(
                got.data[t * c + ch],
                want[[0, ch, t]],
                "frame {t} codebook {ch}"
            );
        }
    }
}

#[test]
fn voice_prompt_from_a_stereo_wav_at_another_rate() {
    let b = dac_bundle("tiny-dac");
    let model = DiaModel::load(&b, &ModelOptions::default()).unwrap();
    let dir = dia_tests::fixtures().join("reference").join("dac");
    let wave: Array3<f32> = read_npy(dir.join("wave.npy")).unwrap();
    let original: Vec<f32> = wave.iter().cloned().collect();
    // The fixture waveform (44.1 kHz mono) at 22.05 kHz, as a stereo 16-bit file whose channels
    // differ (a 440 Hz tone added to one and taken from the other) and average to it.
    let half = resample(&original, 44100, 22050).unwrap();
    let peak = half.iter().fold(0f32, |m, x| m.max(x.abs()));
    let amp = 0.05f32.min(0.999 - peak);
    assert!(amp > 0.02, "the waveform leaves no headroom ({peak})");
    let path = scratch().join("prompt-22k-stereo.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 22050,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for (i, s) in half.iter().enumerate() {
        let d = amp * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 22050.0).sin();
        w.write_sample(((s + d) * 32767.0).round() as i16).unwrap();
        w.write_sample(((s - d) * 32767.0).round() as i16).unwrap();
    }
    w.finalize().unwrap();

    // What dia-run does with it: mix down, resample to the codec's rate, encode.
    let (mono, rate) = read_audio_mono(&path).unwrap();
    assert_eq!((mono.len(), rate), (half.len(), 22050));
    // The mix is the channels' mean: the 22.05 kHz waveform to 16-bit rounding (measured
    // 3.9e-5; one channel alone is off by the tone, 0.05).
    let mix_err = mono
        .iter()
        .zip(&half)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(mix_err <= 2.0 / 32767.0, "mix-down error {mix_err:e}");
    let back = resample(&mono, 22050, 44100).unwrap();
    assert_eq!(back.len(), original.len());
    // Back at 44.1 kHz it is the original less what 22.05 kHz cannot hold: the white noise
    // above 11.025 kHz (std 0.05 · √½ ≈ 0.035 of the fixture's 0.05). Measured RMS error 0.0369
    // (signal RMS 0.416); holding each sample twice instead of resampling gives 0.051, a
    // 5-sample shift 0.216.
    let rms_err = (back
        .iter()
        .zip(&original)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f32>()
        / back.len() as f32)
        .sqrt();
    assert!(rms_err < 0.045, "resampled waveform RMS error {rms_err}");
    // Its codes agree with the original's on most codebook entries: measured 117 of 153
    // (76%; codebook 0 on 15 of 17 frames). A one-channel mix-down gives 60, a summed one 23,
    // sample-and-hold 71.
    let prompt = model.encode_audio(&back).unwrap();
    let want = model.encode_audio(&original).unwrap();
    assert_eq!((prompt.len(), prompt.channels), (want.len(), want.channels));
    let agree = prompt
        .data
        .iter()
        .zip(&want.data)
        .filter(|(a, b)| a == b)
        .count();
    eprintln!(
        "stereo 22.05 kHz prompt vs mono 44.1 kHz original: mix-down error {mix_err:e}, \
         resampled RMS error {rms_err:.4}, codes agree on {agree} of {}",
        want.data.len()
    );
    assert!(
        agree * 3 >= want.data.len() * 2,
        "codes agree on {agree} of {}",
        want.data.len()
    );

    // The command line prefills that prompt: its greedy codes are the library's with it.
    let (prompt_text, text) = ("[S1] The voice. ", "[S2] And now me.");
    let codes = scratch().join("prompted.npy");
    let o = dia_run(
        &b,
        &[
            "--text",
            text,
            "--prompt-audio",
            path.to_str().unwrap(),
            "--prompt-text",
            prompt_text,
            "--temperature",
            "0",
            "--max-tokens",
            "80",
            "--save-codes",
            codes.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = codes_of(&codes);
    let lib = model
        .generate(
            &format!("{prompt_text}{text}"),
            &GenerateOptions {
                max_tokens: Some(80),
                temperature: 0.0,
                audio_prompt: Some(prompt),
                ..GenerateOptions::default()
            },
            |_| {},
        )
        .unwrap();
    // 17 prompt frames + BOS are prefilled; the rest of the 80 steps generate.
    assert!(!got.is_empty() && got.len() <= 80 - 18 - 15 + 1);
    assert_eq!((got.channels, &got.data), (9, &lib.codes.data));
}

/// The names in `dir` that look like a temporary file of an atomic write.
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

#[test]
fn write_wav_replaces_atomically() {
    let dir = scratch().join("atomic");
    fs::create_dir_all(&dir).unwrap();
    let p = dir.join("speech.wav");
    write_wav(&p, &[0.0, 0.5, -0.5], 44100, WavFormat::Pcm16).unwrap();
    let before = fs::read(&p).unwrap();

    // The temporary sibling cannot be created (a directory holds its name: write_wav writes
    // `.NAME.tmp-PID` beside the file): the write fails, the old file is untouched.
    let blocker = dir.join(format!(".speech.wav.tmp-{}", std::process::id()));
    fs::create_dir(&blocker).unwrap();
    let e = write_wav(&p, &[0.25; 1000], 44100, WavFormat::Pcm16)
        .expect_err("the temporary file cannot be created");
    assert!(e.to_string().contains("speech.wav"), "{e}");
    assert_eq!(fs::read(&p).unwrap(), before, "the old file changed");
    fs::remove_dir(&blocker).unwrap();
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));

    // The rename fails after the temporary file is written in full (the destination is a
    // directory with a file in it): that file stays as it was, the temporary file is removed.
    let taken = dir.join("taken.wav");
    fs::create_dir(&taken).unwrap();
    fs::write(taken.join("keep"), b"mine").unwrap();
    let e = write_wav(&taken, &[0.25; 1000], 44100, WavFormat::Float32)
        .expect_err("a directory cannot be replaced by a file");
    assert!(e.to_string().contains("taken.wav"), "{e}");
    assert_eq!(fs::read(taken.join("keep")).unwrap(), b"mine");
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));

    // A reader polling the file while it is rewritten sees one of the complete versions,
    // never a mix or a prefix. (An in-place rewrite, File::create then write_all, shows this
    // reader a short file within the first few of these writes.)
    let (a, b) = (vec![0.25f32; 100_000], vec![-0.5f32; 150_000]);
    write_wav(&dir.join("a.wav"), &a, 44100, WavFormat::Pcm16).unwrap();
    write_wav(&dir.join("b.wav"), &b, 44100, WavFormat::Pcm16).unwrap();
    let versions = [
        fs::read(dir.join("a.wav")).unwrap(),
        fs::read(dir.join("b.wav")).unwrap(),
    ];
    write_wav(&p, &a, 44100, WavFormat::Pcm16).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let reads = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Relaxed);
                let bytes = fs::read(&p).unwrap();
                assert!(
                    versions.contains(&bytes),
                    "read {} bytes that are neither version ({} or {} bytes)",
                    bytes.len(),
                    versions[0].len(),
                    versions[1].len()
                );
                reads += 1;
                if finished {
                    break reads;
                }
            }
        });
        for i in 0..20 {
            let x = if i % 2 == 0 { &b } else { &a };
            write_wav(&p, x, 44100, WavFormat::Pcm16).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap()
    });
    eprintln!("{reads} reads during 20 rewrites, every one a whole version");
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
}
