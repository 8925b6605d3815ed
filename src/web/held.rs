//! A large answer's body (a listing, a file's report, `rules check`) that holds its kind's
//! [`Place`] until it is written out: the next one is built only once this one is sent, so
//! viewers who read slowly or not at all cannot have one built beside another in memory.
//! It is handed to hyper in pieces, because hyper asks for the next piece only when it has
//! room to buffer it (a whole body in one piece would be let go, place and all, as soon as
//! it was queued), and it fails once the time an answer may take has passed, which closes
//! the connection: a viewer who trickles the answer in cannot hold the place for ever.

use crate::engine::handle::Place;
use axum::body::{Body, Bytes};
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

/// The largest piece handed to hyper at once.
const PIECE: usize = 16 * 1024;

/// The time any answer may take to be written out, plus [`PER_MIB`] a MiB.
const ANSWER_TIME: Duration = Duration::from_secs(60);

/// What a MiB of an answer adds to [`ANSWER_TIME`].
const PER_MIB: Duration = Duration::from_secs(2);

/// `response` with its body holding `place` until it is written out (as it is without one).
pub fn held(response: Response, place: Option<Place>) -> Response {
    let Some(place) = place else {
        return response;
    };
    let (parts, inner) = response.into_parts();
    let mib = inner.size_hint().lower() >> 20;
    let time = ANSWER_TIME + PER_MIB * u32::try_from(mib).unwrap_or(u32::MAX / 4);
    let body = Held {
        inner,
        pending: Bytes::new(),
        deadline: Instant::now() + time,
        _place: place,
    };
    Response::from_parts(parts, Body::new(body))
}

struct Held {
    inner: Body,
    /// What is left of the inner body's last piece.
    pending: Bytes,
    deadline: Instant,
    _place: Place,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if Instant::now() > this.deadline {
            return Poll::Ready(Some(Err(axum::Error::new(
                "the answer was not read within the time an answer may take",
            ))));
        }
        if this.pending.is_empty() {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
        let piece = this.pending.split_to(this.pending.len().min(PIECE));
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let pending = self.pending.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + pending);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + pending);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body comes out whole, in pieces of at most [`PIECE`], with its length known
    /// ahead; the place is given back only once the body is let go.
    #[tokio::test]
    async fn a_held_body_is_written_in_pieces_and_keeps_its_place_until_dropped() {
        let places = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let place = Place::from(places.clone().try_acquire_owned().unwrap());
        let text: String = (0..100_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let response = held(Response::new(Body::from(text.clone())), Some(place));
        let mut body = response.into_body();
        assert_eq!(body.size_hint().exact(), Some(text.len() as u64));
        let mut got = Vec::new();
        let mut pieces = 0;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= PIECE);
            got.extend_from_slice(&data);
            pieces += 1;
            assert_eq!(places.available_permits(), 0, "held while written");
        }
        assert_eq!(got, text.as_bytes());
        assert_eq!(pieces, text.len().div_ceil(PIECE));
        drop(body);
        assert_eq!(places.available_permits(), 1, "given back once let go");
    }

    /// Past its time, the body fails (hyper then closes the connection) and its place is
    /// given back as the body is dropped.
    #[tokio::test]
    async fn a_held_body_fails_once_its_time_has_passed() {
        let places = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let mut body = Held {
            inner: Body::from(vec![b'x'; 40_000]),
            pending: Bytes::new(),
            deadline: Instant::now() + Duration::from_secs(60),
            _place: Place::from(places.clone().try_acquire_owned().unwrap()),
        };
        let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(first.unwrap().is_ok(), "written while in time");
        body.deadline = Instant::now() - Duration::from_secs(1);
        let late = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(late.unwrap().is_err(), "failed once late");
        drop(body);
        assert_eq!(places.available_permits(), 1);
    }
}
