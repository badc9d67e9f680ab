//! Handles: every object handed to C is an ID in a process-wide table, never a pointer to our
//! memory. A freed (or made-up) handle is simply not in the table, so using it gives
//! `DIA_ERR_INVALID_HANDLE` instead of undefined behaviour; IDs are never reused, so an old
//! handle cannot alias a newer object.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use dia_run::DiaModel;

use crate::error::CapiError;
use crate::stream::StreamState;
use crate::AudioData;

/// A loaded model and its load warnings as C strings (handed out by pointer).
pub struct ModelEntry {
    pub model: Arc<DiaModel>,
    pub warnings: Vec<std::ffi::CString>,
}

pub enum Object {
    Model(Arc<ModelEntry>),
    Stream(Arc<Mutex<StreamState>>),
    Audio(Arc<AudioData>),
}

impl Object {
    fn kind(&self) -> &'static str {
        match self {
            Object::Model(_) => "model",
            Object::Stream(_) => "stream",
            Object::Audio(_) => "audio",
        }
    }
}

struct Registry {
    next: usize,
    objects: BTreeMap<usize, Object>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    objects: BTreeMap::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    // No code holding the lock can panic midway through an update, so a poisoned lock (a
    // panic elsewhere while it was held) still guards a consistent table.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// IDs step by 16 from 16: they look like aligned pointers to debuggers and are never NULL.
const STEP: usize = 16;

/// Registers `obj`; returns its handle.
pub fn insert(obj: Object) -> usize {
    let mut r = registry();
    r.next += STEP;
    let id = r.next;
    r.objects.insert(id, obj);
    id
}

/// Removes the object `id` of `kind`; a NULL handle (0) is a no-op, as `free(NULL)` is.
pub fn remove(id: usize, kind: &'static str, what: &'static str) -> Result<(), CapiError> {
    if id == 0 {
        return Ok(());
    }
    let mut r = registry();
    match r.objects.get(&id) {
        Some(o) if o.kind() == kind => {
            // Dropped after the lock is released: a model's sessions take a while to close.
            let obj = r.objects.remove(&id);
            drop(r);
            drop(obj);
            Ok(())
        }
        _ => Err(CapiError::Handle { what, kind }),
    }
}

fn lookup<T>(
    id: usize,
    kind: &'static str,
    what: &'static str,
    pick: impl FnOnce(&Object) -> Option<T>,
) -> Result<T, CapiError> {
    if id == 0 {
        return Err(CapiError::Null { what });
    }
    registry()
        .objects
        .get(&id)
        .and_then(pick)
        .ok_or(CapiError::Handle { what, kind })
}

pub fn model_entry(id: usize, what: &'static str) -> Result<Arc<ModelEntry>, CapiError> {
    lookup(id, "model", what, |o| match o {
        Object::Model(m) => Some(Arc::clone(m)),
        _ => None,
    })
}

pub fn model(id: usize, what: &'static str) -> Result<Arc<DiaModel>, CapiError> {
    model_entry(id, what).map(|e| Arc::clone(&e.model))
}

pub fn stream(id: usize, what: &'static str) -> Result<Arc<Mutex<StreamState>>, CapiError> {
    lookup(id, "stream", what, |o| match o {
        Object::Stream(s) => Some(Arc::clone(s)),
        _ => None,
    })
}

pub fn audio(id: usize, what: &'static str) -> Result<Arc<AudioData>, CapiError> {
    lookup(id, "audio", what, |o| match o {
        Object::Audio(a) => Some(Arc::clone(a)),
        _ => None,
    })
}
