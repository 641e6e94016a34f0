//! Container image build and suite (being written).
pub fn docker_test(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("docker-test is not available yet")
}
pub fn run_image(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("run is not available yet")
}
