//! `dia-export check BUNDLE --ep coreml`: ONNX Runtime's CoreML EP rules (ML Program, static
//! shapes) checked per node. The command line is a contract: exit status 0 when every node of
//! every graph is supported, non-zero otherwise.

use dia_coreml_check::{check_bundle, check_model, CheckOptions};
use dia_graphs::builder::DYN;
use dia_graphs::{Builder, DType};
use dia_tests::{bundle, run, stderr};

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn op_without_builder_and_dynamic_shape_are_reported() {
    let mut b = Builder::new("t", None);
    let x = b.input_dyn("x", DType::F32, &[1, 4, DYN], &["frames"]);
    let s = b.input("s", DType::F32, &[1, 4, 1]);
    let y = b.scoped("gate", |b| b.mul(&x, &s));
    let a = b.input("a", DType::F32, &[2, 3]);
    let c = b.input("c", DType::F32, &[2, 3]);
    let m = b.scoped("mask", |b| b.less(&a, &c));
    let z = b.input("z", DType::F32, &[2, 3]);
    let w = b.scoped("select", |b| b.where_(&m, &a, &z));
    b.output_dyn(&y, "y", &["frames"]);
    b.output(&w, "w");
    let (model, _) = b.finish("", &[]).unwrap();

    let found = check_model(&model, &CheckOptions::default());
    let less = found
        .iter()
        .find(|u| u.op_type == "Less")
        .unwrap_or_else(|| panic!("Less not reported: {found:#?}"));
    assert!(less.node.starts_with("mask/Less"), "{less:?}");
    assert!(less.reason.contains("no Less builder"), "{less:?}");
    assert!(less.source.contains("op_builder_factory.cc"), "{less:?}");

    let mul = found
        .iter()
        .find(|u| u.op_type == "Mul")
        .unwrap_or_else(|| panic!("dynamic Mul not reported: {found:#?}"));
    assert!(mul.node.starts_with("gate/Mul"), "{mul:?}");
    assert!(mul.reason.contains("dynamic input shape"), "{mul:?}");
    assert!(mul.reason.contains("`x` is [1, 4, ?]"), "{mul:?}");
    assert!(
        mul.source.contains("helper.cc: IsInputSupported"),
        "{mul:?}"
    );

    // Where takes the bool from Less inside the partition: supported on its own.
    assert!(!found.iter().any(|u| u.op_type == "Where"), "{found:#?}");

    // Without the static-shape requirement the dynamic Mul is fine for the provider.
    let relaxed = CheckOptions {
        require_static_shapes: false,
        ..CheckOptions::default()
    };
    let found = check_model(&model, &relaxed);
    assert!(!found.iter().any(|u| u.op_type == "Mul"), "{found:#?}");
    assert!(found.iter().any(|u| u.op_type == "Less"), "{found:#?}");
}

#[test]
fn static_graph_of_supported_ops_passes() {
    let mut b = Builder::new("t", None);
    let x = b.input("x", DType::F32, &[1, 4, 8]);
    let w = b.initializer("w", DType::F32, &[8, 16], &f32_bytes(&[0.5; 128]));
    let bias = b.const_f32(&[0.1; 16], &[16]);
    let h = b.matmul(&x, &w);
    let h = b.add(&h, &bias);
    let g = b.sigmoid(&h);
    let h = b.mul(&h, &g);
    let h = b.reshape(&h, &[4, 16]);
    let h = b.transpose(&h, &[1, 0]);
    let parts = b.split(&h, 0, &[8, 8]);
    let h = b.concat(&[&parts[1], &parts[0]], 1);
    let h = b.unsqueeze(&h, &[0]);
    let h = b.slice(&h, 2, 0, 6);
    let m = b.reduce_mean(&h, &[-1], true);
    let h = b.sub(&h, &m);
    let p = b.softmax(&h, -1);
    let table = b.const_f32(&[1.0; 12], &[6, 2]);
    let idx = b.const_i64(&[0, 5, 2], &[3]);
    let e = b.gather(&table, &idx, 0);
    let e = b.cast(&e, DType::F16);
    let e = b.cast(&e, DType::F32);
    b.output(&p, "p");
    b.output(&e, "e");
    let (model, _) = b.finish("", &[]).unwrap();

    let found = check_model(&model, &CheckOptions::default());
    assert!(found.is_empty(), "unexpected: {found:#?}");
}

#[test]
fn cli_lists_what_the_coreml_target_must_change() {
    let b = bundle("tiny-nari");
    let o = run(
        "dia-export",
        &["check", b.to_str().unwrap(), "--ep", "coreml"],
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    println!("{out}");
    assert!(
        !o.status.success(),
        "the float32 bundle is not CoreML-ready yet:\n{out}"
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for g in ["encoder.onnx", "decoder_step.onnx"] {
        assert!(out.contains(&format!("{g}: ")), "{g} missing:\n{out}");
    }
    // The encoder's text length is dynamic.
    assert!(out.contains("dynamic input shape"), "{out}");

    // The library agrees with the command line.
    let graphs = check_bundle(&b, "coreml").unwrap();
    let names: Vec<&str> = graphs.iter().map(|(g, _)| g.as_str()).collect();
    assert_eq!(names, ["encoder.onnx", "decoder_step.onnx"]);
    assert!(graphs.iter().any(|(_, u)| !u.is_empty()));
}

#[test]
fn cli_refuses_an_unknown_execution_provider() {
    let b = bundle("tiny-nari");
    let o = run(
        "dia-export",
        &["check", b.to_str().unwrap(), "--ep", "tensorrt"],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("only `coreml` is supported"), "{err}");
    assert!(check_bundle(&b, "tensorrt").is_err());
}
