//! YAML read event by event, with libyaml's parser (the `unsafe-libyaml` crate that serde_yaml
//! is built on), so that the reader of a template decides when to stop.
//!
//! serde_yaml builds a whole document before anyone can look at it, and libyaml's scanner pays,
//! on every token, one step per open flow collection (`[` or `{`): a document of `[[[[...` costs
//! time quadratic in its depth (a 64k-deep one took 12.9 s). Reading events lets the template
//! reader refuse the document at its depth limit, when the scanner holds at most that many
//! collections plus its bounded look-ahead (a simple key is looked for at most 1024 characters
//! ahead, on one line), so every token costs a bounded amount of work.
//!
//! This is the only `unsafe` of the release domain; each block says why it is sound.

use std::marker::PhantomData;
use std::ptr::{NonNull, addr_of_mut};

use unsafe_libyaml as unsafe_yaml;

/// Where an event starts: 1-based line and column, as editors count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    pub line: u64,
    pub column: u64,
}

impl Mark {
    fn from_sys(mark: unsafe_yaml::yaml_mark_t) -> Self {
        Self {
            line: mark.line + 1,
            column: mark.column + 1,
        }
    }
}

impl std::fmt::Display for Mark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} column {}", self.line, self.column)
    }
}

/// What a node carries besides its content: an anchor (`&name`) and a tag (`!Ref`), as libyaml
/// resolved it (`!Ref` stays `!Ref`; `!!str` becomes `tag:yaml.org,2002:str`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Properties {
    pub anchor: Option<String>,
    pub tag: Option<String>,
}

/// One parsing event (libyaml's, with the data copied out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    StreamStart,
    StreamEnd,
    /// `tag_directives`: the document declares `%TAG` handles.
    DocumentStart {
        tag_directives: bool,
    },
    DocumentEnd,
    /// `*name`.
    Alias {
        anchor: String,
    },
    /// `plain`: written without quotes or block indicator, so its type is resolved from its text.
    Scalar {
        properties: Properties,
        value: String,
        plain: bool,
    },
    SequenceStart {
        properties: Properties,
    },
    SequenceEnd,
    MappingStart {
        properties: Properties,
    },
    MappingEnd,
}

/// libyaml's description of a syntax error, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub problem: String,
    pub mark: Mark,
    pub context: Option<String>,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.problem, self.mark)?;
        if let Some(context) = &self.context {
            write!(f, " ({context})")?;
        }
        Ok(())
    }
}

/// A libyaml parser over `input`, yielding events one at a time.
pub(crate) struct EventReader<'input> {
    /// Boxed and never moved out: `yaml_parser_set_input_string` stores a pointer to the parser
    /// in the parser itself (its read handler's data), so it must stay at one address.
    parser: Box<unsafe_yaml::yaml_parser_t>,
    done: bool,
    /// The parser reads `input` through a raw pointer: it must not outlive it.
    _input: PhantomData<&'input [u8]>,
}

impl<'input> EventReader<'input> {
    pub(crate) fn new(input: &'input str) -> Self {
        // SAFETY: `yaml_parser_initialize` writes every field of the parser (it zeroes it, then
        // allocates its buffers; the allocation aborts rather than fail), so the box holds an
        // initialised parser afterwards. The parser keeps `input`'s pointer and length, which
        // stay valid for 'input, which `_input` ties the reader to; UTF-8 is what `&str` is.
        let parser = unsafe {
            let mut parser = Box::<unsafe_yaml::yaml_parser_t>::new_uninit();
            let raw = parser.as_mut_ptr();
            let _initialised = unsafe_yaml::yaml_parser_initialize(raw);
            unsafe_yaml::yaml_parser_set_encoding(raw, unsafe_yaml::YAML_UTF8_ENCODING);
            unsafe_yaml::yaml_parser_set_input_string(raw, input.as_ptr(), input.len() as u64);
            parser.assume_init()
        };
        Self {
            parser,
            done: false,
            _input: PhantomData,
        }
    }

    /// The next event and where it starts; after an error or the end of the stream, an error.
    pub(crate) fn next_event(&mut self) -> Result<(Event, Mark), SyntaxError> {
        if self.done {
            return Err(SyntaxError {
                problem: "no more events".to_owned(),
                mark: Mark { line: 0, column: 0 },
                context: None,
            });
        }
        let parser: *mut unsafe_yaml::yaml_parser_t = addr_of_mut!(*self.parser);
        let mut event = std::mem::MaybeUninit::<unsafe_yaml::yaml_event_t>::uninit();
        // SAFETY: `parser` is initialised and pinned in its box (see `new`). On success
        // `yaml_parser_parse` fills `event`, whose pointers (anchor, tag, value) stay valid
        // until `yaml_event_delete`; `copy_event` copies what they point at before that. On
        // failure the event is not filled and is not read; the parser's error fields are.
        unsafe {
            if unsafe_yaml::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                self.done = true;
                return Err(syntax_error(&*parser));
            }
            let event = event.as_mut_ptr();
            let copied = copy_event(&*event);
            let mark = Mark::from_sys((*event).start_mark);
            unsafe_yaml::yaml_event_delete(event);
            if copied == Event::StreamEnd {
                self.done = true;
            }
            Ok((copied, mark))
        }
    }
}

impl Drop for EventReader<'_> {
    fn drop(&mut self) {
        // SAFETY: the parser was initialised in `new` and is deleted once, here.
        unsafe { unsafe_yaml::yaml_parser_delete(addr_of_mut!(*self.parser)) }
    }
}

/// A NUL-terminated string of libyaml's, if the pointer is not null.
///
/// # Safety
/// `ptr` is null or points at a NUL-terminated string valid for this call.
unsafe fn c_string(ptr: *const u8) -> Option<String> {
    let ptr = NonNull::new(ptr.cast_mut())?;
    // SAFETY: the caller's contract.
    let text = unsafe { std::ffi::CStr::from_ptr(ptr.as_ptr().cast()) };
    Some(String::from_utf8_lossy(text.to_bytes()).into_owned())
}

/// # Safety
/// `event` was filled by a successful `yaml_parser_parse` and not yet deleted.
unsafe fn copy_event(event: &unsafe_yaml::yaml_event_t) -> Event {
    // SAFETY: the union field read is the one `type_` says is set; its pointers are null or
    // valid (the caller's contract), and a scalar's value holds `length` bytes.
    unsafe {
        match event.type_ {
            unsafe_yaml::YAML_STREAM_START_EVENT => Event::StreamStart,
            unsafe_yaml::YAML_DOCUMENT_START_EVENT => {
                let directives = event.data.document_start.tag_directives;
                Event::DocumentStart {
                    tag_directives: directives.start != directives.end,
                }
            }
            unsafe_yaml::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
            unsafe_yaml::YAML_ALIAS_EVENT => Event::Alias {
                anchor: c_string(event.data.alias.anchor).unwrap_or_default(),
            },
            unsafe_yaml::YAML_SCALAR_EVENT => {
                let scalar = event.data.scalar;
                let bytes = if scalar.value.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(scalar.value, scalar.length as usize)
                };
                Event::Scalar {
                    properties: Properties {
                        anchor: c_string(scalar.anchor),
                        tag: c_string(scalar.tag),
                    },
                    value: String::from_utf8_lossy(bytes).into_owned(),
                    plain: scalar.style == unsafe_yaml::YAML_PLAIN_SCALAR_STYLE,
                }
            }
            unsafe_yaml::YAML_SEQUENCE_START_EVENT => Event::SequenceStart {
                properties: Properties {
                    anchor: c_string(event.data.sequence_start.anchor),
                    tag: c_string(event.data.sequence_start.tag),
                },
            },
            unsafe_yaml::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
            unsafe_yaml::YAML_MAPPING_START_EVENT => Event::MappingStart {
                properties: Properties {
                    anchor: c_string(event.data.mapping_start.anchor),
                    tag: c_string(event.data.mapping_start.tag),
                },
            },
            unsafe_yaml::YAML_MAPPING_END_EVENT => Event::MappingEnd,
            // YAML_STREAM_END_EVENT; a successful parse never yields YAML_NO_EVENT.
            _ => Event::StreamEnd,
        }
    }
}

/// The parser's error, read from its error fields.
fn syntax_error(parser: &unsafe_yaml::yaml_parser_t) -> SyntaxError {
    // SAFETY: libyaml's problem and context are null or static NUL-terminated strings.
    let (problem, context) = unsafe {
        (
            c_string(parser.problem.cast()),
            c_string(parser.context.cast()),
        )
    };
    let mark = if parser.problem_mark.line == 0 && parser.problem_mark.column == 0 {
        parser.context_mark
    } else {
        parser.problem_mark
    };
    SyntaxError {
        problem: problem.unwrap_or_else(|| "invalid YAML".to_owned()),
        mark: Mark::from_sys(mark),
        context,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Result<Vec<Event>, SyntaxError> {
        let mut reader = EventReader::new(text);
        let mut out = Vec::new();
        loop {
            let (event, _) = reader.next_event()?;
            let end = event == Event::StreamEnd;
            out.push(event);
            if end {
                return Ok(out);
            }
        }
    }

    #[test]
    fn events_carry_tags_anchors_and_styles() {
        let out = events("a: !Ref b\nc: &x 'd'\ne: *x\n").unwrap();
        assert!(out.contains(&Event::Scalar {
            properties: Properties {
                anchor: None,
                tag: Some("!Ref".to_owned())
            },
            value: "b".to_owned(),
            plain: true,
        }));
        assert!(out.contains(&Event::Scalar {
            properties: Properties {
                anchor: Some("x".to_owned()),
                tag: None
            },
            value: "d".to_owned(),
            plain: false,
        }));
        assert!(out.contains(&Event::Alias {
            anchor: "x".to_owned()
        }));
        let tagged = events("a: !!python/object:os.system x\n").unwrap();
        assert!(
            tagged
                .iter()
                .any(|e| matches!(e, Event::Scalar { properties, .. }
            if properties.tag.as_deref() == Some("tag:yaml.org,2002:python/object:os.system")))
        );
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = events("a: b\nc: [d\n").unwrap_err();
        assert!(err.mark.line >= 2, "{err}");
        assert!(err.to_string().contains("line"), "{err}");
        let mut reader = EventReader::new("[");
        while reader.next_event().is_ok() {}
        assert!(reader.next_event().is_err());
    }

    #[test]
    fn tag_directives_are_reported() {
        let out = events("%TAG !e! tag:example.com,2000:\n---\na: !e!x b\n").unwrap();
        assert!(out.contains(&Event::DocumentStart {
            tag_directives: true
        }));
    }
}
