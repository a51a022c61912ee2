fn main() -> anyhow::Result<()> {
    print!("{}", sluice_operator::crd_yaml()?);
    Ok(())
}
