pub(crate) fn apply(
    _t: u8,
    i: &super::Input<'_>,
    _o: &std::path::Path,
    _l: &super::Limits,
) -> Result<super::Produced, super::TransformError> {
    Err(super::TransformError::NoTransform {
        kind: i.kind.as_str(),
        stage: 0,
    })
}
