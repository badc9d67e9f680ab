//! dia-run end to end with the codec: text -> WAV (16-bit and float), and voice prompts from
//! WAV files at other rates and channel counts.

use std::fs;
use std::path::Path;

use dia_run::audio::{read_wav_mono, write_wav, WavFormat};
use dia_run::{DiaModel, ModelOptions};
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
    // 16-bit: rounding plus the 1/32767 (write) vs 1/32768 (read) scale.
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
        let (got, _) = read_wav_mono(&wav).unwrap();
        assert_eq!(got.len(), frames.len() * 512);
        let err = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b.clamp(-1.0, 1.0)).abs()));
        assert!(err <= tol + 1e-7, "{flag:?}: {err}");
        let leftovers: Vec<_> = fs::read_dir(scratch())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
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
    let dir = dia_tests::fixtures().join("reference").join("dac");
    let wave: Array3<f32> = read_npy(dir.join("wave.npy")).unwrap();
    // A stereo 22.05 kHz 16-bit file made from the fixture waveform.
    let mono: Vec<f32> = wave.iter().step_by(2).cloned().collect();
    let path = scratch().join("prompt-22k-stereo.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 22050,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for s in &mono {
        let v = (s.clamp(-1.0, 1.0) * 32767.0) as i16;
        w.write_sample(v).unwrap();
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();

    let codes = scratch().join("prompted.npy");
    let o = dia_run(
        &b,
        &[
            "--text",
            "[S2] And now me.",
            "--prompt-audio",
            path.to_str().unwrap(),
            "--prompt-text",
            "[S1] The voice. ",
            "--temperature",
            "0",
            "--max-tokens",
            "80",
            "--save-codes",
            codes.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // 17 prompt frames + BOS are prefilled; the rest of the 80 steps generate.
    let frames = codes_of(&codes);
    assert!(
        !frames.is_empty() && frames.len() <= 80 - 18 - 15 + 1,
        "{summary}"
    );
    assert_eq!(frames.channels, 9);
}

#[test]
fn write_wav_replaces_atomically() {
    let p = scratch().join("atomic.wav");
    fs::write(&p, b"old").unwrap();
    write_wav(&p, &[0.0, 0.5, -0.5], 44100, WavFormat::Pcm16).unwrap();
    let (x, _) = read_wav_mono(&p).unwrap();
    assert_eq!(x.len(), 3);
}
