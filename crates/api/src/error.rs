//! AWS-shaped errors: the one table from failures to exception names and HTTP statuses.

use carillon_control::ControlError;
use serde::Serialize;

/// The exceptions this API answers with. `name` goes in `X-Amzn-ErrorType`, which is what the
/// SDKs use to pick the modeled exception; `code` is the short Chime code in the body's `Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exception {
    BadRequest,
    /// Unmodeled Coral validation error, used instead of BadRequest when configured.
    Validation,
    LimitExceeded,
    TooManyTags,
    Unauthorized,
    Forbidden,
    NotFound,
    ResourceNotFound,
    Conflict,
    UnprocessableEntity,
    Throttling,
    ServiceFailure,
    ServiceUnavailable,
    /// No operation matches the method, path and query.
    UnknownOperation,
}

impl Exception {
    /// The exception shape name (`X-Amzn-ErrorType`).
    pub fn name(self) -> &'static str {
        match self {
            Exception::BadRequest => "BadRequestException",
            Exception::Validation => "ValidationException",
            Exception::LimitExceeded => "LimitExceededException",
            Exception::TooManyTags => "TooManyTagsException",
            Exception::Unauthorized => "UnauthorizedException",
            Exception::Forbidden => "ForbiddenException",
            Exception::NotFound => "NotFoundException",
            Exception::ResourceNotFound => "ResourceNotFoundException",
            Exception::Conflict => "ConflictException",
            Exception::UnprocessableEntity => "UnprocessableEntityException",
            Exception::Throttling => "ThrottlingException",
            Exception::ServiceFailure => "ServiceFailureException",
            Exception::ServiceUnavailable => "ServiceUnavailableException",
            Exception::UnknownOperation => "UnknownOperationException",
        }
    }

    /// HTTP status, as the model declares it (LimitExceeded and TooManyTags are 400).
    pub fn status(self) -> u16 {
        match self {
            Exception::BadRequest
            | Exception::Validation
            | Exception::LimitExceeded
            | Exception::TooManyTags => 400,
            Exception::Unauthorized => 401,
            Exception::Forbidden => 403,
            Exception::NotFound | Exception::ResourceNotFound | Exception::UnknownOperation => 404,
            Exception::Conflict => 409,
            Exception::UnprocessableEntity => 422,
            Exception::Throttling => 429,
            Exception::ServiceFailure => 500,
            Exception::ServiceUnavailable => 503,
        }
    }

    /// The short code Chime puts in the body's `Code` (and in batch `ErrorCode`s).
    pub fn code(self) -> &'static str {
        match self {
            Exception::BadRequest => "BadRequest",
            Exception::Validation => "ValidationException",
            Exception::LimitExceeded => "ResourceLimitExceeded",
            Exception::TooManyTags => "TooManyTags",
            Exception::Unauthorized => "Unauthorized",
            Exception::Forbidden => "Forbidden",
            Exception::NotFound => "NotFound",
            Exception::ResourceNotFound => "ResourceNotFound",
            Exception::Conflict => "Conflict",
            Exception::UnprocessableEntity => "Unprocessable",
            Exception::Throttling => "Throttling",
            Exception::ServiceFailure => "ServiceFailure",
            Exception::ServiceUnavailable => "ServiceUnavailable",
            Exception::UnknownOperation => "UnknownOperation",
        }
    }
}

/// An error answer. Messages are for the client: they say what is wrong with the request and
/// never carry internal details (those are logged by the caller with the request id).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", exception.name())]
pub struct ApiError {
    pub exception: Exception,
    pub message: String,
    /// `ResourceName` member of ResourceNotFound/TooManyTags.
    pub resource_name: Option<String>,
    /// `Retry-After` seconds for ServiceUnavailable.
    pub retry_after_seconds: Option<u32>,
}

impl ApiError {
    pub fn new(exception: Exception, message: impl Into<String>) -> Self {
        ApiError {
            exception,
            message: message.into(),
            resource_name: None,
            retry_after_seconds: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Exception::BadRequest, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Exception::Forbidden, message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after_seconds: u32) -> Self {
        ApiError {
            retry_after_seconds: Some(retry_after_seconds),
            ..Self::new(Exception::ServiceUnavailable, message)
        }
    }

    /// 500 with a generic message: the cause stays in the server log.
    pub fn internal() -> Self {
        Self::new(
            Exception::ServiceFailure,
            "The service encountered an internal error; see the server log for the request id",
        )
    }

    /// The JSON body: `Code`, `Message`, `RequestId` (+ `ResourceName`, `RetryAfterSeconds`).
    pub fn body(&self, request_id: &str) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body<'a> {
            code: &'a str,
            message: &'a str,
            request_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            resource_name: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            retry_after_seconds: Option<String>,
        }
        serde_json::to_vec(&Body {
            code: self.exception.code(),
            message: &self.message,
            request_id,
            resource_name: self.resource_name.as_deref(),
            retry_after_seconds: self.retry_after_seconds.map(|s| s.to_string()),
        })
        .expect("serialising plain strings cannot fail")
    }
}

/// The exception a domain error becomes. The single mapping from domain to wire.
pub fn exception_of(error: &ControlError) -> Exception {
    match error {
        ControlError::MeetingNotFound(_) | ControlError::AttendeeNotFound { .. } => {
            Exception::NotFound
        }
        ControlError::ResourceNotFound(_) => Exception::ResourceNotFound,
        // CreateMeeting does not declare NotFound, so an unknown primary is a bad request.
        ControlError::PrimaryNotFound(_) | ControlError::PrimaryIsReplica(_) => {
            Exception::BadRequest
        }
        ControlError::TooManyReplicas { .. }
        | ControlError::TooManyMeetings { .. }
        | ControlError::MeetingFull { .. } => Exception::LimitExceeded,
        ControlError::IdempotencyMismatch { .. } => Exception::Conflict,
        ControlError::TooManyTags { .. } => Exception::TooManyTags,
        ControlError::Invalid(_) => Exception::BadRequest,
        _ => Exception::ServiceFailure,
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        let mut api = ApiError::new(exception_of(&error), error.to_string());
        if let ControlError::ResourceNotFound(arn) = &error {
            api.resource_name = Some(arn.clone());
        }
        api
    }
}
