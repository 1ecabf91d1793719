//! The errors the stand-in answers with: CodePipeline's own exception names, so the SDK maps
//! them to the same typed errors it gives against AWS.

/// A CodePipeline exception, by the name AWS gives it in `__type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ActionNotFound,
    ApprovalAlreadyCompleted,
    Conflict,
    DuplicatedStopRequest,
    InvalidApprovalToken,
    InvalidJobState,
    InvalidNextToken,
    JobNotFound,
    OutputVariablesSizeExceeded,
    PipelineExecutionNotFound,
    PipelineExecutionNotStoppable,
    PipelineNotFound,
    PipelineVersionNotFound,
    StageNotFound,
    Validation,
    /// The body is not JSON, or not of the operation's shape.
    Serialization,
    /// `X-Amz-Target` names no operation the stand-in serves.
    UnknownOperation,
}

impl ErrorCode {
    pub fn exception_name(self) -> &'static str {
        match self {
            Self::ActionNotFound => "ActionNotFoundException",
            Self::ApprovalAlreadyCompleted => "ApprovalAlreadyCompletedException",
            Self::Conflict => "ConflictException",
            Self::DuplicatedStopRequest => "DuplicatedStopRequestException",
            Self::InvalidApprovalToken => "InvalidApprovalTokenException",
            Self::InvalidJobState => "InvalidJobStateException",
            Self::InvalidNextToken => "InvalidNextTokenException",
            Self::JobNotFound => "JobNotFoundException",
            Self::OutputVariablesSizeExceeded => "OutputVariablesSizeExceededException",
            Self::PipelineExecutionNotFound => "PipelineExecutionNotFoundException",
            Self::PipelineExecutionNotStoppable => "PipelineExecutionNotStoppableException",
            Self::PipelineNotFound => "PipelineNotFoundException",
            Self::PipelineVersionNotFound => "PipelineVersionNotFoundException",
            Self::StageNotFound => "StageNotFoundException",
            Self::Validation => "ValidationException",
            Self::Serialization => "SerializationException",
            Self::UnknownOperation => "UnknownOperationException",
        }
    }
}

/// A request the stand-in refuses, answered as HTTP 400 `{"__type": …, "message": …}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", .code.exception_name())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Validation, message)
    }

    pub fn pipeline_not_found(name: &str) -> Self {
        Self::new(
            ErrorCode::PipelineNotFound,
            format!("The pipeline {name} does not exist"),
        )
    }
}
