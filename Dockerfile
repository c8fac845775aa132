# stepwatch as a container, for running against a ClickHouse server (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir .
ENV STEPWATCH_HOST=0.0.0.0 STEPWATCH_PORT=8000 STEPWATCH_DATA_DIR=/var/lib/stepwatch
EXPOSE 8000
CMD ["stepwatch", "serve"]
